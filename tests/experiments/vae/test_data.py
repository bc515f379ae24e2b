"""Preparing digits and MNIST to Parquet, and reading them back."""
import gzip
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.vae import data


def test_prepare_digits_layout_and_card(tmp_path):
    assert data.prepare_digits(tmp_path) == 0
    out = tmp_path / "digits"
    card = json.loads((out / "card.json").read_text())
    assert card["splits"]["train"] + card["splits"]["test"] == 1797
    assert card["splits"]["test"] == pytest.approx(0.2 * 1797, abs=10)
    assert card["pixel_max"] == 16 and "CC BY" in card["licence"]
    assert set(card["sha256"]) == {"digits.csv.gz", "train.parquet", "test.parquet"}
    table = pq.read_table(out / "train.parquet")
    assert table.column_names == ["pixels", "label", "height", "width"]
    assert table["height"][0].as_py() == table["width"][0].as_py() == 8
    assert len(table["pixels"][0].as_py()) == 64
    splits = data.load(tmp_path, "digits")
    x = splits["train"].images
    assert x.shape == (card["splits"]["train"], 1, 8, 8) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(x * 16)) <= set(range(17))  # 0..16 scaled exactly
    assert sorted(np.unique(splits["test"].labels)) == list(range(10))  # every class in the test split


def test_prepare_digits_is_deterministic(tmp_path):
    data.prepare_digits(tmp_path / "a")
    data.prepare_digits(tmp_path / "b")
    for split in ("train.parquet", "test.parquet"):
        assert (tmp_path / "a/digits" / split).read_bytes() == (tmp_path / "b/digits" / split).read_bytes()


def _idx(path, array: np.ndarray, gz: bool):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def _fake_mnist(folder, n_train=30, n_test=10, gz=True):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    suffix = ".gz" if gz else ""
    arrays = {}
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        _idx(folder / f"{stem}-images-idx3-ubyte{suffix}", images, gz)
        _idx(folder / f"{stem}-labels-idx1-ubyte{suffix}", labels, gz)
        arrays[stem] = (images, labels)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_prepare_mnist_from_idx_files(tmp_path, monkeypatch, gz):
    arrays = _fake_mnist(tmp_path / "idx", gz=gz)
    monkeypatch.setenv("COLLAPSE_MNIST_DIR", str(tmp_path / "idx"))
    data.prepare_mnist(tmp_path / "data")
    card = json.loads((tmp_path / "data/mnist/card.json").read_text())
    assert card["splits"] == {"train": 30, "test": 10} and card["pixel_max"] == 255
    assert len(card["sha256"]) == 6  # four IDX files, two splits
    splits = data.load(tmp_path / "data", "mnist")
    assert splits["train"].images.shape == (30, 1, 28, 28)
    np.testing.assert_array_equal(np.rint(splits["test"].images[:, 0] * 255), arrays["t10k"][0])
    np.testing.assert_array_equal(splits["test"].labels, arrays["t10k"][1])


def test_prepare_mnist_from_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("COLLAPSE_MNIST_DIR", raising=False)
    _fake_mnist(tmp_path / "data/mnist/raw")
    data.prepare_mnist(tmp_path / "data")
    assert data.load(tmp_path / "data", "mnist")["train"].images.shape[0] == 30


def test_missing_mnist_is_one_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("COLLAPSE_MNIST_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="MNIST not found") as e:
        data.prepare_mnist(tmp_path / "data")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="collapse-hpc data prepare mnist"):
        data.load(tmp_path / "data", "mnist")  # a run on unprepared MNIST


def test_bad_idx_file_is_a_user_error(tmp_path):
    (tmp_path / "x").write_bytes(b"not an idx file")
    with pytest.raises(UserError, match="not an IDX file"):
        data.read_idx(tmp_path / "x")
    _idx(tmp_path / "y", np.zeros((3, 2, 2)), gz=False)
    (tmp_path / "y").write_bytes((tmp_path / "y").read_bytes()[:-1])  # truncated
    with pytest.raises(UserError, match="header says"):
        data.read_idx(tmp_path / "y")


def test_an_idx_header_forged_or_cut_short_is_one_line(tmp_path):
    # a header of 2**31 x 2**31 x 4 images over no data: numpy's product of its sizes wrapped round to 0, which
    # matched the empty body, and the reshape ended in a traceback; so did a header cut short (6 bytes)
    forged = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (2**31, 2**31, 4))
    (tmp_path / "x").write_bytes(forged)
    with pytest.raises(UserError, match=r"0 bytes of data, the header says \[2147483648, 2147483648, 4\]"):
        data.read_idx(tmp_path / "x")
    (tmp_path / "x").write_bytes(forged[:6])
    with pytest.raises(UserError, match=r"its header is cut short \(6 bytes; 3 dimensions need 16\)"):
        data.read_idx(tmp_path / "x")


def test_corrupt_split_is_a_user_error(tmp_path):
    data.prepare_digits(tmp_path)
    (tmp_path / "digits/test.parquet").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not the file its card.json recorded"):
        data.load(tmp_path, "digits")


def test_a_split_changed_after_preparation_is_refused(tmp_path):
    """Readable but not what was prepared (here: one image fewer): the card's sha256 says so."""
    import pyarrow.parquet as pq

    data.prepare_digits(tmp_path)
    path = tmp_path / "digits" / "train.parquet"
    pq.write_table(pq.read_table(path).slice(1), path)
    with pytest.raises(UserError, match="train.parquet: not the file its card.json recorded"):
        data.load(tmp_path, "digits")


def _clothes(folder, labels=range(10), size=(12, 16)):
    """A 10-class set of grey images of the user's (e.g. Fashion-MNIST) as the four IDX files."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    for stem, n in (("train", 200), ("t10k", 60)):
        y = np.resize(np.asarray(list(labels)), n)
        x = np.clip(rng.normal(20 * y[:, None, None], 30, size=(n, *size)), 0, 255)  # class sets the grey
        _idx(folder / f"{stem}-images-idx3-ubyte.gz", x, gz=True)
        _idx(folder / f"{stem}-labels-idx1-ubyte.gz", y, gz=True)
    return folder


def test_your_own_idx_images_are_prepared_under_their_own_name(tmp_path):
    from collapse_hpc.data import prepare

    assert prepare("clothes", tmp_path / "data", source=str(_clothes(tmp_path / "idx"))) == 0
    card = json.loads((tmp_path / "data/clothes/card.json").read_text())
    assert card["kind"] == "images" and (card["height"], card["width"]) == (12, 16)
    assert card["splits"] == {"train": 200, "test": 60} and card["pixel_max"] == 255
    splits = data.load(tmp_path / "data", "clothes")
    assert splits["train"].images.shape == (200, 1, 12, 16) and splits["train"].shape == (12, 16)
    assert sorted(np.unique(splits["test"].labels)) == list(range(10))
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".")]  # built beside, renamed in
    # named as the language model's data, it is refused as not text (not as unprepared)
    from collapse_hpc import experiments

    run = experiments.config_from_dict({"data_dir": str(tmp_path / "data"), "lm": {"dataset": "clothes"}})
    with pytest.raises(UserError, match="has no validation split: it is not a data set the lm reads"):
        experiments.get("lm").check(run)


def test_your_own_images_cut_short_or_prepared_from_other_files_are_refused(tmp_path):
    from collapse_hpc.data import prepare

    first, second = _clothes(tmp_path / "a"), _clothes(tmp_path / "b", range(9, -1, -1))
    gz = second / "train-images-idx3-ubyte.gz"
    whole = gz.read_bytes()
    gz.write_bytes(whole[:200])  # a download cut short: it was an EOFError traceback
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz: not a readable gzip file"):
        prepare("clothes", tmp_path / "data", source=str(second))
    gz.write_bytes(whole)
    assert prepare("clothes", tmp_path / "data", source=str(first)) == 0
    assert prepare("clothes", tmp_path / "data", source=str(first)) == 0  # the same files: already prepared
    with pytest.raises(UserError, match=r"clothes: already prepared from other files \(IDX files: a\)"):
        prepare("clothes", tmp_path / "data", source=str(second))  # it said "already prepared", exit 0


def test_a_stage_count_the_images_do_not_fit_is_refused_before_the_run(tmp_path):
    # it was refused only inside the first generation, after the run folder had been made
    from collapse_hpc import experiments
    from collapse_hpc.data import prepare

    prepare("clothes", tmp_path / "data", source=str(_clothes(tmp_path / "idx")))
    for dataset, stages, says in (("clothes", 3, "12x16 images cannot pass 3"),
                                  ("digits", 4, "8x8 images cannot pass 4")):
        run = experiments.config_from_dict({"data_dir": str(tmp_path / "data"),
                                            "vae": {"dataset": dataset, "stages": stages}})
        with pytest.raises(UserError, match=says):
            experiments.get("vae").check(run)
    fits = {"data_dir": str(tmp_path / "data"), "vae": {"dataset": "clothes", "stages": 2}}
    experiments.get("vae").check(experiments.config_from_dict(fits))


def test_your_own_images_of_no_pixels_are_refused_in_one_line(tmp_path):
    from collapse_hpc.data import prepare

    folder = _clothes(tmp_path / "idx")
    for stem, n in (("train", 200), ("t10k", 60)):
        _idx(folder / f"{stem}-images-idx3-ubyte.gz", np.zeros((n, 0, 16)), gz=True)
    with pytest.raises(UserError, match="the images are 0x16 pixels"):
        prepare("clothes", tmp_path / "data", source=str(folder))
    assert not (tmp_path / "data" / "clothes").exists()


@pytest.mark.parametrize("labels, says", [(range(12), "labels must be 0..9"), ((), "not empty .*; found none$"),
                                          (range(15), r"; found 0, 1, 2, .*, 10, 11 and 3 more$")])
def test_your_own_images_with_other_labels_are_refused_and_nothing_is_written(tmp_path, labels, says):
    """Past 12 labels the line names the first 12 and how many more (it cut the list unsaid)."""
    from collapse_hpc.data import prepare

    folder = tmp_path / "idx"
    if labels:
        _clothes(folder, labels)
    else:  # empty splits
        folder.mkdir()
        for stem in ("train", "t10k"):
            _idx(folder / f"{stem}-images-idx3-ubyte", np.zeros((0, 8, 8)), gz=False)
            _idx(folder / f"{stem}-labels-idx1-ubyte", np.zeros((0,)), gz=False)
    with pytest.raises(UserError, match=says):
        prepare("clothes", tmp_path / "data", source=str(folder))
    assert not (tmp_path / "data" / "clothes").exists()


def test_a_text_folder_still_goes_to_the_language_model_and_vae_refuses_it(tmp_path):
    from collapse_hpc.data import prepare

    (tmp_path / "text").mkdir()
    story = "".join(f"line {i} of a story about a cat and a dog\n" for i in range(3000))
    (tmp_path / "text" / "a.txt").write_text(story)
    assert prepare("story", tmp_path / "data", source=str(tmp_path / "text")) == 0
    assert (tmp_path / "data/story/validation.parquet").is_file()  # the lm's three splits
    with pytest.raises(UserError, match="story is not a data set of images"):
        data.load(tmp_path / "data", "story")


def test_your_own_images_with_a_labels_file_missing_name_it(tmp_path):
    # it listed all four names, leaving the user to find which one was not there
    from collapse_hpc.data import prepare

    folder = _clothes(tmp_path / "idx")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match=r"\.gz or not\); missing: t10k-labels-idx1-ubyte$"):
        prepare("clothes", tmp_path / "data", source=str(folder))
    assert not (tmp_path / "data").exists()


def test_your_own_idx_files_in_capitals_are_read(tmp_path):
    """An archive unpacked on Windows or from a FAT stick names them TRAIN-IMAGES-IDX3-UBYTE.GZ: the folder
    went to the vae (its names match in any case) and the vae said all four were missing."""
    from collapse_hpc.data import prepare

    folder = _clothes(tmp_path / "idx")
    for p in list(folder.iterdir()):
        p.rename(p.with_name(p.name.upper()))
    assert prepare("clothes", tmp_path / "data", source=str(folder)) == 0
    assert data.load(tmp_path / "data", "clothes")


def test_your_own_idx_files_in_a_folder_below_the_one_given_are_pointed_to(tmp_path):
    """torchvision's download root (root/MNIST/raw/ holds the files): the folder went to the vae, which said
    all four were missing; it names the folder that holds them, and nothing is written."""
    from collapse_hpc.data import prepare

    raw = _clothes(tmp_path / "root" / "FashionMNIST" / "raw")
    with pytest.raises(UserError) as e:
        prepare("clothes", tmp_path / "data", source=str(tmp_path / "root"))
    assert str(e.value) == (f"--from {tmp_path / 'root'}: the four IDX files are in {raw}, not in the folder "
                            f"itself; give --from {raw}")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("given", ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
def test_one_of_your_own_idx_files_given_names_its_folder(tmp_path, given):
    """--from the images file itself: the line said all four files were missing, the one given among them."""
    from collapse_hpc.data import prepare

    folder = _clothes(tmp_path / "idx")
    with pytest.raises(UserError) as e:
        prepare("clothes", tmp_path / "data", source=str(folder / given))
    assert str(e.value) == (f"--from {folder / given}: one file; give the folder that holds the four IDX files: "
                            f"--from {folder}")
    assert not (tmp_path / "data").exists()


def test_your_own_colour_images_are_refused_as_colour(tmp_path):
    # RGB IDX files (n, h, w, 3) were refused as "(200, 12, 16, 3) images do not match (200,) labels":
    # the labels were right, the channels were the matter
    from collapse_hpc.data import prepare

    folder = _clothes(tmp_path / "idx")
    for stem, n in (("train", 200), ("t10k", 60)):
        _idx(folder / f"{stem}-images-idx3-ubyte.gz", np.zeros((n, 12, 16, 3)), gz=True)
    with pytest.raises(UserError, match=r"images are 12x16x3 \(n x height x width x 3\): the vae reads grey "
                                        r"images, n x height x width; convert them to grey first"):
        prepare("clothes", tmp_path / "data", source=str(folder))
    assert not (tmp_path / "data" / "clothes").exists()


def test_a_text_data_set_named_as_the_vaes_is_refused_before_the_run(tmp_path):
    # the lm's text has a train and a test split too: it passed the check, the run folder was made and
    # the first generation failed on it
    from collapse_hpc import experiments
    from collapse_hpc.data import prepare

    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("".join(f"line {i} of a story about a cat\n" for i in range(3000)))
    assert prepare("story", tmp_path / "data", source=str(tmp_path / "text")) == 0
    run = experiments.config_from_dict({"data_dir": str(tmp_path / "data"), "vae": {"dataset": "story"}})
    with pytest.raises(UserError, match=r"^vae.dataset: .*story is not a data set of images; name one prepared "
                                        r"from images"):
        experiments.get("vae").check(run)


def test_your_own_images_with_one_test_image_are_refused_before_the_run(tmp_path):
    # one test image was prepared, then every generation failed on 'Eigenvalues did not converge': the
    # Frechet distance fits a covariance to the test images' features, which one image does not have
    from collapse_hpc import experiments
    from collapse_hpc.data import prepare

    folder = _clothes(tmp_path / "idx")
    _idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((1, 12, 16)), gz=True)
    _idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros((1,)), gz=True)
    with pytest.raises(UserError, match=r"the test split holds 1 image; give it at least 2"):
        prepare("clothes", tmp_path / "data", source=str(folder))
    assert not (tmp_path / "data" / "clothes").exists()
    # a set prepared so before is refused by the run's check, before the run folder exists
    data._write(tmp_path / "data" / "clothes", {"train": (np.zeros((20, 12, 16)), np.arange(20) % 10),
                                                "test": (np.zeros((1, 12, 16)), np.zeros(1))},
                {"name": "clothes", "source": "IDX files", "pixel_max": 255})
    run = experiments.config_from_dict({"data_dir": str(tmp_path / "data"), "vae": {"dataset": "clothes"}})
    with pytest.raises(UserError, match=r"^vae.dataset: .*clothes: the test split holds 1 image"):
        experiments.get("vae").check(run)


def test_idx_files_cloned_without_git_lfs_say_so(tmp_path):
    """A repository's IDX files cloned without git-lfs are pointers of three lines: 'not an IDX file' left
    the user to guess why."""
    folder = tmp_path / "fashion"
    _fake_mnist(folder)
    (folder / "t10k-images-idx3-ubyte.gz").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 4422102\n")
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte.gz: a Git LFS pointer.*git lfs pull"):
        data.prepare_local("fashion", folder, tmp_path / "data")
    assert not (tmp_path / "data" / "fashion").exists()


def test_digits_whose_card_does_not_read_are_prepared_again(tmp_path, capsys):
    """Not "already prepared" over a card every run then refuses: prepared again, and read."""
    data.prepare_digits(tmp_path)
    (tmp_path / "digits" / "card.json").write_text('{"splits":')
    capsys.readouterr()
    assert data.prepare_digits(tmp_path) == 0
    assert "already prepared" not in capsys.readouterr().out
    assert json.loads((tmp_path / "digits" / "card.json").read_text())["splits"]["test"] > 2
    assert data.load(tmp_path, "digits")["test"].labels.size > 2


def test_digits_to_prepare_where_the_data_folder_cannot_take_it_is_refused_before_the_run(tmp_path, monkeypatch):
    # digits is prepared by the first unit where missing: into a colleague's read-only data folder, a file or
    # a link to a folder cleaned away, the run was made and each unit failed on a PermissionError or
    # FileExistsError; the check now says so before the run folder exists
    from collapse_hpc import experiments
    from collapse_hpc.store import space

    vae = experiments.get("vae")
    (tmp_path / "afile").write_text("")
    (tmp_path / "gone").symlink_to(tmp_path / "scratch")
    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setattr(space, "writable", lambda folder: Path(folder) != shared, raising=False)  # root: any
    for data_dir, said in ((shared, f"{shared}: not writable by you"), (shared / "sub", f"{shared}: not writable"),
                           (tmp_path / "afile", f"{tmp_path / 'afile'}: a file, not a folder"),
                           (tmp_path / "gone", f"{tmp_path / 'gone'}: a symbolic link to {tmp_path / 'scratch'}")):
        run = experiments.config_from_dict({"data_dir": str(data_dir), "vae": {"dataset": "digits"}})
        with pytest.raises(UserError, match=rf"^data_dir: {re.escape(said)}.*digits is not prepared there"):
            vae.check(run)
    vae.check(experiments.config_from_dict({"data_dir": str(tmp_path / "new"), "vae": {"dataset": "digits"}}))
    assert data.prepare_digits(tmp_path / "mine") == 0  # prepared, a read-only folder serves: nothing is written
    monkeypatch.setattr(space, "writable", lambda folder: False)
    vae.check(experiments.config_from_dict({"data_dir": str(tmp_path / "mine"), "vae": {"dataset": "digits"}}))


def test_digits_prepared_in_a_folder_one_may_not_read_is_refused_as_unread_not_as_unprepared():
    """A prepared digits folder one may not list (chmod 000, a colleague's): the check said "not writable by you,
    and digits is not prepared there", though it is, and named preparing it elsewhere."""
    import shutil
    import tempfile

    from collapse_hpc import experiments
    from tests.helpers import ended, forked_as, nobody

    user = nobody()
    top = Path(tempfile.mkdtemp(prefix="collapse-hpc-digits-"))
    try:
        top.chmod(0o755)
        assert data.prepare_digits(top) == 0
        (top / "digits").chmod(0o000)
        run = experiments.config_from_dict({"data_dir": str(top), "vae": {"dataset": "digits"}})

        def check() -> str:
            try:
                experiments.get("vae").check(run)
            except UserError as e:
                return str(e)
            return "passed"

        assert ended(forked_as(user, check)) == (
            f"data_dir: {top / 'digits'}: not readable by you (no permission to list or read it), so whether digits "
            f"is prepared there is unknown; nothing is prepared over it: give yourself read permission (chmod -R "
            f"u+rX {top / 'digits'}), or another data_dir, then run the same command again")
    finally:
        shutil.rmtree(top)
