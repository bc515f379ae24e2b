"""samples.png has the documented pixel size and draws each image where it should."""
import numpy as np
import pytest
from PIL import Image

from collapse_hpc.experiments.vae import grid


@pytest.mark.parametrize("h, w, scale, size", [(8, 8, 4, (342, 342)), (28, 28, 2, (582, 582)), (8, 8, 1, (102, 102))])
def test_grid_pixel_size(tmp_path, h, w, scale, size):
    assert grid.grid_size(h, w, scale) == size
    grid.write_grid(np.zeros((100, 1, h, w)), tmp_path / "g.png", scale)
    with Image.open(tmp_path / "g.png") as im:
        assert im.size == size and im.mode == "L" and im.format == "PNG"


def test_grid_places_images_row_by_row(tmp_path):
    images = np.zeros((100, 1, 8, 8))
    images[12] = 1.0  # row 1, column 2 all white
    grid.write_grid(images, tmp_path / "g.png", 4)
    px = np.asarray(Image.open(tmp_path / "g.png"))
    top, left = grid.PAD + 1 * (32 + grid.PAD), grid.PAD + 2 * (32 + grid.PAD)
    assert (px[top:top + 32, left:left + 32] == 255).all()
    assert px[top - 1, left] == grid.BACKGROUND
    assert (px == 255).sum() == 32 * 32


def test_grid_wants_100_images(tmp_path):
    with pytest.raises(ValueError):
        grid.write_grid(np.zeros((99, 8, 8)), tmp_path / "g.png", 4)
