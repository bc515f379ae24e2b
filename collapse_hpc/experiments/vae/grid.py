"""samples.png: a 10x10 grid of decoded samples, drawn pixel-exact with PIL.

Each image pixel becomes a `scale` x `scale` block; cells are separated and framed by PAD
grey pixels. A grid of H x W images is therefore 10*W*scale + 11*PAD pixels wide and
10*H*scale + 11*PAD high (8x8 digits at scale 4: 342 x 342; MNIST at scale 2: 582 x 582).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

ROWS = COLS = 10
PAD = 2
BACKGROUND = 128


def grid_size(height: int, width: int, scale: int) -> tuple[int, int]:
    """(width, height) in pixels of the PNG for images of height x width."""
    return COLS * width * scale + (COLS + 1) * PAD, ROWS * height * scale + (ROWS + 1) * PAD


def write_grid(images: np.ndarray, path: Path, scale: int) -> None:
    """images: (100, 1, H, W) or (100, H, W) in [0, 1], drawn row by row, white on black."""
    from PIL import Image

    images = np.asarray(images).reshape(len(images), *np.asarray(images).shape[-2:])
    if len(images) != ROWS * COLS:
        raise ValueError(f"a grid takes {ROWS * COLS} images, got {len(images)}")
    h, w = images.shape[1:]
    width, height = grid_size(h, w, scale)
    canvas = np.full((height, width), BACKGROUND, np.uint8)
    pixels = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
    for i, img in enumerate(pixels):
        r, c = divmod(i, COLS)
        top, left = PAD + r * (h * scale + PAD), PAD + c * (w * scale + PAD)
        canvas[top:top + h * scale, left:left + w * scale] = np.kron(img, np.ones((scale, scale), np.uint8))
    Image.fromarray(canvas).save(path, format="PNG")
