"""samples.png: a 10x10 grid of decoded samples, drawn pixel-exact with PIL.

Each image pixel becomes a `scale` x `scale` block; cells are separated and framed by PAD
grey pixels. A grid of H x W images is therefore 10*W*scale + 11*PAD pixels wide and
10*H*scale + 11*PAD high (8x8 digits at scale 4: 342 x 342; MNIST at scale 2: 582 x 582). read_cells
takes the images back out at their own resolution, for a figure to draw them at its own integer scale.
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


def canvas(pixels: np.ndarray, cols: int, scale: int, pad: int, rows: int | None = None) -> np.ndarray:
    """The first cols x rows (default: cols) of `pixels` (n, H, W; uint8) in a grid, row by row: each image
    pixel a `scale` x `scale` block, cells separated and framed by `pad` BACKGROUND pixels."""
    n, h, w = pixels.shape
    rows = -(-min(n, cols * (rows or cols)) // cols)
    out = np.full((rows * (h * scale + pad) + pad, cols * (w * scale + pad) + pad), BACKGROUND, np.uint8)
    for i, img in enumerate(pixels[:rows * cols]):
        r, c = divmod(i, cols)
        top, left = pad + r * (h * scale + pad), pad + c * (w * scale + pad)
        out[top:top + h * scale, left:left + w * scale] = np.kron(img, np.ones((scale, scale), np.uint8))
    return out


def write_grid(images: np.ndarray, path: Path, scale: int) -> None:
    """images: (100, 1, H, W) or (100, H, W) in [0, 1], drawn row by row, white on black."""
    from PIL import Image

    images = np.asarray(images).reshape(len(images), *np.asarray(images).shape[-2:])
    if len(images) != ROWS * COLS:
        raise ValueError(f"a grid takes {ROWS * COLS} images, got {len(images)}")
    pixels = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
    Image.fromarray(canvas(pixels, COLS, scale, PAD)).save(path, format="PNG")


def read_cells(path: Path) -> np.ndarray | None:
    """The images of a samples.png at their own resolution, (100, H, W) uint8: write_grid undone, its scale
    found from the pixels (the largest s that makes every cell of constant s x s blocks, so nothing is lost);
    None for a PNG not of write_grid's layout."""
    from PIL import Image

    with Image.open(path) as im:
        px = np.asarray(im.convert("L"))
    (height, width), frames = px.shape, (COLS + 1) * PAD
    if (width - frames) % COLS or (height - frames) % ROWS or min(width, height) <= frames:
        return None
    w, h = (width - frames) // COLS, (height - frames) // ROWS
    cells = np.stack([px[PAD + r * (h + PAD):PAD + r * (h + PAD) + h, PAD + c * (w + PAD):PAD + c * (w + PAD) + w]
                      for r in range(ROWS) for c in range(COLS)])
    if not np.array_equal(canvas(cells, COLS, 1, PAD), px):  # the frames are not write_grid's
        return None
    scale = max(s for s in range(1, min(h, w) + 1) if h % s == 0 and w % s == 0
                and np.array_equal(np.kron(cells[:, ::s, ::s], np.ones((1, s, s), np.uint8)), cells))
    return cells[:, ::scale, ::scale]
