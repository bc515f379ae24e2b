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


@pytest.mark.parametrize("h, w, scale", [(8, 8, 4), (8, 8, 1), (28, 28, 2), (6, 10, 3)])
def test_read_cells_gives_back_the_images_at_their_own_resolution(tmp_path, h, w, scale):
    """A figure draws the grid at its own integer scale: it needs the images themselves, not the PNG's blocks."""
    images = np.random.default_rng(0).integers(0, 256, (100, h, w)).astype(np.uint8)
    grid.write_grid(images / 255, tmp_path / "g.png", scale)
    np.testing.assert_array_equal(grid.read_cells(tmp_path / "g.png"), images)


def test_read_cells_of_a_png_of_another_layout_is_none(tmp_path):
    Image.fromarray(np.zeros((280, 280), np.uint8)).save(tmp_path / "plain.png")
    Image.fromarray(np.full((342, 342), 255, np.uint8)).save(tmp_path / "no_frames.png")  # the right size, no frames
    assert grid.read_cells(tmp_path / "plain.png") is None and grid.read_cells(tmp_path / "no_frames.png") is None


def test_canvas_draws_the_first_cols_by_cols_images_at_a_scale_with_its_own_frame():
    images = np.arange(100, dtype=np.uint8).reshape(100, 1, 1) * 2 + 1  # one pixel each, all distinct
    out = grid.canvas(images, 3, 2, 1)
    assert out.shape == (3 * 3 + 1, 3 * 3 + 1)
    assert (out[1:3, 4:6] == images[1, 0, 0]).all() and (out[4:6, 1:3] == images[3, 0, 0]).all()
    assert out[0, 0] == out[3, 3] == grid.BACKGROUND
