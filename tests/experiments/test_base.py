"""What an experiment's check says of a data set that is not prepared."""
from types import SimpleNamespace

import pytest

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.base import check_prepared


def test_a_relative_data_dir_not_found_says_it_is_read_from_the_current_folder(tmp_path, monkeypatch):
    """A run made in the checkout (data_dir: data) and submitted again from another folder: the check
    said only 'not prepared; run: collapse-hpc data prepare …', which would prepare a second copy there."""
    monkeypatch.chdir(tmp_path)
    section = SimpleNamespace(dataset="digits")
    with pytest.raises(UserError) as relative:
        check_prepared("vae", SimpleNamespace(data_dir="data"), ("train",), section=section, builtin=("digits",))
    assert str(relative.value) == (
        f"vae.dataset: data/digits is not prepared; run: collapse-hpc data prepare digits --data-dir data "
        f"(data_dir data is read from the current folder, {tmp_path}: run from the folder it was prepared in, "
        f"or give data_dir as an absolute path)")
    with pytest.raises(UserError) as absolute:
        check_prepared("vae", SimpleNamespace(data_dir=str(tmp_path / "data")), ("train",), section=section,
                       builtin=("digits",))
    assert str(absolute.value).endswith(f"--data-dir {tmp_path / 'data'}")
