"""What an experiment's check says of a data set that is not prepared."""
from types import SimpleNamespace

import pytest

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.base import check_prepared


def test_a_data_dir_not_found_here_says_how_to_give_where_the_data_is(tmp_path, monkeypatch):
    """A run folder copied from another machine (its saved config names the data folder it was made with), or
    made before data_dir was saved absolute and run again from another folder: the check said only 'not
    prepared; run: collapse-hpc data prepare …', which would prepare a second copy there."""
    monkeypatch.chdir(tmp_path)
    section = SimpleNamespace(dataset="digits")
    gone = tmp_path / "elsewhere" / "data"
    with pytest.raises(UserError) as missing:
        check_prepared("vae", SimpleNamespace(data_dir=str(gone)), ("train",), section=section, builtin=("digits",))
    assert str(missing.value) == (
        f"vae.dataset: {gone}/digits is not prepared; run: collapse-hpc data prepare digits --data-dir {gone} "
        f"(there is no folder {gone} here; where the data sets are elsewhere, give it: --set data_dir=PATH)")
    (tmp_path / "data").mkdir()  # the folder is there, the data set not: only how to prepare it
    with pytest.raises(UserError) as absolute:
        check_prepared("vae", SimpleNamespace(data_dir=str(tmp_path / "data")), ("train",), section=section,
                       builtin=("digits",))
    assert str(absolute.value).endswith(f"--data-dir {tmp_path / 'data'}")
