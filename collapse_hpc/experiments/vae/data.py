"""Digit images for the VAE: prepared once to Parquet, read back as float arrays in [0, 1].

Layout: data/<name>/{train,test}.parquet, one row per image: pixels (list<uint8>, row-major),
label (int8), height and width (int16); data/<name>/card.json: source, licence, pixel_max
(an image is pixels / pixel_max), the sha256 of the source files and of each split, split sizes.

- digits (offline default): scikit-learn's bundled copy of the UCI handwritten digits,
  1,797 8x8 images with values 0..16, split 80/20 within each class by a fixed permutation.
  A run prepares it by itself when it is missing.
- mnist: the four standard IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte,
  t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, gzipped or not), looked for in
  $COLLAPSE_MNIST_DIR, then in data/mnist/raw/; failing that, the Hugging Face datasets
  cache of `ylecun/mnist` (offline is fine once cached). No torchvision.
- any other name: the same four IDX files of the user's own grey images (`data prepare NAME
  --from FOLDER`: Fashion-MNIST, KMNIST and other sets ship so), labels 0..9 (ten class shares;
  the rarest class's share and the levels the report draws count the classes the train split has).
"""
from __future__ import annotations

import gzip
import math
import os
import shlex
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from collapse_hpc.config import FILE_NAME, FILE_NAME_CHARS
from collapse_hpc.errors import RERUN, UserError
from collapse_hpc.experiments.vae.metrics import CLASSES  # labels 0..9: ten class shares
from collapse_hpc.logs import first_few
from collapse_hpc.store import atomic
from collapse_hpc.store.cards import intact_card, source_name
from collapse_hpc.store.lock import data_lock

SPLITS = ("train", "test")
KIND = "images"  # card.json's kind (an older card has none: its pixel_max tells images)
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
MIN_TEST = 2  # the Frechet distance fits a covariance to the test images' features: one image has none
MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@dataclass
class Images:
    """One split: images (N, 1, H, W) float32 in [0, 1] and labels (N,) int64."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int]:
        return self.images.shape[2], self.images.shape[3]


# ---------------------------------------------------------------- writing

def _is_prepared(out: Path) -> bool:
    """Its card reads (one cut short or edited by hand: prepared again) and every split is there."""
    return intact_card(out) is not None and all((out / f"{s}.parquet").is_file() for s in SPLITS)


def _write(out: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], card: dict, final: Path | None = None) -> None:
    """Write each split (uint8 images (N, H, W), labels) and the card last, atomically; `final`: the
    folder `out` becomes, as the line printed names it."""
    import pyarrow as pa

    hashes, sizes = {}, {}
    for split, (images, labels) in splits.items():
        n, h, w = images.shape
        card = {**card, "height": h, "width": w}
        flat = pa.array(np.ascontiguousarray(images, dtype=np.uint8).reshape(-1))
        table = pa.table({
            "pixels": pa.FixedSizeListArray.from_arrays(flat, h * w).cast(pa.list_(pa.uint8())),
            "label": pa.array(labels.astype(np.int8)),
            "height": pa.array(np.full(n, h, np.int16)),
            "width": pa.array(np.full(n, w, np.int16)),
        })
        path = atomic.write_parquet(out / f"{split}.parquet", table)
        hashes[f"{split}.parquet"] = atomic.sha256_file(path)
        sizes[split] = n
    atomic.write_json(out / "card.json", {**card, "kind": KIND, "splits": sizes,
                                          "sha256": {**card.get("sha256", {}), **hashes}})
    print(f"{final or out}: " + ", ".join(f"{n} {s}" for s, n in sizes.items()) + f" images ({card['source']})")


def prepare_digits(data_dir: Path, force: bool = False) -> int:
    """scikit-learn's 8x8 digits, split 80/20 within each class (deterministic)."""
    from importlib import resources

    from sklearn.datasets import load_digits

    out = Path(data_dir) / "digits"
    if _is_prepared(out) and not force:
        print(f"{out}: already prepared (--force to redo)")
        return 0
    bunch = load_digits()
    images = bunch.images.astype(np.uint8)  # values 0..16, exactly integers
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    test = np.zeros(len(labels), bool)
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test[idx[:int(round(DIGITS_TEST_FRACTION * len(idx)))]] = True
    source = resources.files("sklearn.datasets.data") / "digits.csv.gz"
    with atomic.atomic_dir(out) as building:  # whole or not at all, as every data set
        _write(building, {"train": (images[~test], labels[~test]), "test": (images[test], labels[test])}, {
            "name": "digits",
            "source": "scikit-learn load_digits (UCI Optical Recognition of Handwritten Digits)",
            "url": "https://archive.ics.uci.edu/dataset/80",
            "licence": "CC BY 4.0 (E. Alpaydin, C. Kaynak, UCI Machine Learning Repository)",
            "pixel_max": 16,
            "split": f"{1 - DIGITS_TEST_FRACTION:.0%}/{DIGITS_TEST_FRACTION:.0%} within each class, "
                     f"numpy default_rng({DIGITS_SPLIT_SEED}) permutation",
            "sha256": {"digits.csv.gz": atomic.sha256_file(source)},
        }, final=out)
    return 0


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (uint8 data, gzipped or not) as an array of its declared shape."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:  # cut short or damaged: one line, not a traceback
            raise UserError(f"{path}: not a readable gzip file ({e})") from None
    if raw.startswith(b"version https://git-lfs.github.com/spec/"):  # a clone made without git-lfs
        raise UserError(f"{path}: a Git LFS pointer, not the file's content (cloned without git-lfs?); run git lfs "
                        f"pull in the clone, then prepare again")
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise UserError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise UserError(f"{path}: its header is cut short ({len(raw)} bytes; {ndim} dimensions need {4 + 4 * ndim})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(dims):  # Python's ints: numpy's product of a forged header wrapped round to 0
        raise UserError(f"{path}: {body.size} bytes of data, the header says {dims}")
    return body.reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    """The IDX file of this stem in the folder, in any case (an archive unpacked on Windows or from a
    FAT stick: TRAIN-IMAGES-IDX3-UBYTE), gzipped or not."""
    names = (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz")
    by_lower = {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}
    return next((by_lower[n] for n in names if n in by_lower), None)


def _idx_below(source: Path) -> Path | None:
    """The folder under `source` that holds the four IDX files (torchvision's download root: MNIST/raw/)."""
    first = MNIST_FILES["train"][0]
    for image in sorted(source.rglob("*")):
        if image.name.lower() in (first, first + ".gz") and _holds_idx(image.parent):
            return image.parent
    return None


def _holds_idx(folder: Path) -> bool:
    """Whether the folder holds the four IDX files of MNIST's names."""
    return all(_find_idx(folder, stem) for pair in MNIST_FILES.values() for stem in pair)


def _mnist_from_idx(folder: Path):
    splits, hashes = {}, {}
    for split, (img_stem, lab_stem) in MNIST_FILES.items():
        paths = [_find_idx(folder, img_stem), _find_idx(folder, lab_stem)]
        if None in paths:
            return None
        images, labels = (read_idx(p) for p in paths)
        if images.ndim == 4:  # colour (n, h, w, channels): the labels may be right, the channels are not
            raise UserError(f"{paths[0]}: the images are {'x'.join(map(str, images.shape[1:]))} (n x height x "
                            f"width x {images.shape[3]}): the vae reads grey images, n x height x width; "
                            f"convert them to grey first")
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            raise UserError(f"{paths[0]}: {images.shape} images do not match {labels.shape} labels")
        splits[split] = (images, labels.astype(np.int64))
        hashes.update({p.name: atomic.sha256_file(p) for p in paths})
    return splits, hashes, f"MNIST IDX files in {folder}"


def _mnist_from_hf_cache():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        from datasets import load_dataset

        ds = load_dataset("ylecun/mnist")
    except Exception:  # not cached (or no datasets): the caller names every place looked at
        return None
    splits = {s: (np.stack([np.asarray(im, np.uint8) for im in ds[s]["image"]]), np.asarray(ds[s]["label"], np.int64))
              for s in SPLITS}
    return splits, {}, "Hugging Face datasets cache of ylecun/mnist"


def prepare_mnist(data_dir: Path, force: bool = False, source: Path | None = None) -> int:
    """MNIST from IDX files (`source`, $COLLAPSE_MNIST_DIR or data/mnist/raw/) or the HF datasets cache."""
    out = Path(data_dir) / "mnist"
    if _is_prepared(out) and not force:
        print(f"{out}: already prepared (--force to redo)")
        return 0
    folders = [Path(p) for p in [source, os.environ.get("COLLAPSE_MNIST_DIR"), out / "raw"] if p]
    found = None
    for folder in folders:
        found = _mnist_from_idx(folder)
        if found:
            break
    found = found or _mnist_from_hf_cache()
    if not found:
        raise UserError("MNIST not found: put the four IDX files (train-images-idx3-ubyte.gz, …) in "
                        f"{' or '.join(map(str, folders))} (or set COLLAPSE_MNIST_DIR), or cache ylecun/mnist "
                        "with the datasets library")
    splits, hashes, where = found
    _write(out, splits, {
        "name": "mnist", "source": where, "url": "http://yann.lecun.com/exdb/mnist/",
        "licence": "CC BY-SA 3.0 (Y. LeCun, C. Cortes, C. J. C. Burges)", "pixel_max": 255,
        "split": "the standard 60,000 / 10,000 split", "sha256": hashes,
    })
    return 0


def prepare_local(name: str, source: Path, data_dir: Path, force: bool = False) -> int:
    """The user's own grey images as the four IDX files MNIST ships (the same names, gzipped or
    not) in the folder `source`; labels 0..9. Built beside data/NAME and renamed into place."""
    source = Path(source)
    if not FILE_NAME.fullmatch(name):  # the same rule as vae.dataset
        raise UserError(f"data set name {name!r}: use {FILE_NAME_CHARS} only")
    out = Path(data_dir) / name
    found = _mnist_from_idx(source) if source.is_dir() else None
    if not found:
        stems = [s for pair in MNIST_FILES.values() for s in pair]
        missing = [s for s in stems if not source.is_dir() or _find_idx(source, s) is None]
        if source.is_file() and _holds_idx(source.parent):  # one of the four files itself named
            raise UserError(f"--from {source}: one file; give the folder that holds the four IDX files: "
                            f"--from {source.parent}")
        below = _idx_below(source) if source.is_dir() else None
        if below is not None:
            raise UserError(f"--from {source}: the four IDX files are in {below}, not in the folder itself; "
                            f"give --from {below}")
        raise UserError(f"--from {source}: a folder with the four IDX files of MNIST's names ({', '.join(stems)}; "
                        f".gz or not); missing: {', '.join(missing)}")
    splits, hashes, _ = found
    earlier = intact_card(out) if not force else None
    if earlier is not None:
        sources = {k: v for k, v in (earlier.get("sha256") or {}).items() if not k.endswith(".parquet")}
        if sources != hashes:  # a run would read the earlier images under this name
            raise UserError(f"{out}: already prepared from other files ({earlier.get('source')}); give these "
                            f"another name, or --force to prepare {name} again from {source}")
        print(f"{out}: already prepared (use --force to redo)")
        return 0
    if splits["train"][0].shape[1:] != splits["test"][0].shape[1:]:
        raise UserError(f"--from {source}: train images are {splits['train'][0].shape[1:]}, test images "
                        f"{splits['test'][0].shape[1:]}; both splits need one size")
    if 0 in splits["train"][0].shape[1:]:  # Arrow's fixed-size lists refused it with a traceback
        raise UserError(f"--from {source}: the images are {'x'.join(map(str, splits['train'][0].shape[1:]))} "
                        f"pixels; give images of at least one pixel")
    for split, (images, labels) in splits.items():
        if len(labels) == 0 or labels.max() >= CLASSES:
            raise UserError(f"--from {source}: the {split} labels must be 0..{CLASSES - 1} and not empty "
                            f"(the vae's class metrics are {CLASSES} shares); found "
                            f"{first_few([str(y) for y in sorted(set(labels.tolist()))], 12, ', ') or 'none'}")
    if len(splits["test"][1]) < MIN_TEST:
        raise UserError(f"--from {source}: {_too_few_test(len(splits['test'][1]))}")
    with atomic.atomic_dir(out) as building:
        _write(building, splits, {"name": name, "source": f"IDX files: {source_name(source)}",
                                  "licence": "as given by the files' owner", "pixel_max": 255,
                                  "split": "the files' own train (train-*) and test (t10k-*) images",
                                  "sha256": hashes}, final=out)
    return 0


# ---------------------------------------------------------------- reading

def ensure(data_dir: Path, name: str) -> Path:
    """The prepared folder of `name`; digits is prepared on the spot, anything else must exist."""
    out = Path(data_dir) / name
    if _is_prepared(out):
        return out
    if name == "digits":
        with data_lock(data_dir):  # as data prepare: units starting together take turns, the later find it
            if not _is_prepared(out):
                prepare_digits(data_dir)
        return out
    raise UserError(f"{out}: data set {name} is not prepared; run: collapse-hpc data prepare {name} "
                    f"--data-dir {data_dir}")


def check_digits_room(data_dir: Path) -> None:
    """Before the run: digits not prepared yet is prepared by its first unit (ensure) into data_dir, which must
    then be a folder this user may write (a colleague's read-only one failed each unit on it)."""
    from collapse_hpc.store.space import nearest_folder, not_a_folder, writable

    out = Path(data_dir) / "digits"
    if _is_prepared(out):
        return
    if out.is_dir() and not os.access(out, os.R_OK | os.X_OK):  # prepared maybe, but not to be looked into
        raise UserError(f"data_dir: {out}: not readable by you (no permission to list or read it), so whether "
                        f"digits is prepared there is unknown; nothing is prepared over it: give yourself read "
                        f"permission (chmod -R u+rX {shlex.quote(str(out))}), or another data_dir, then {RERUN}")
    blocked = not_a_folder(out)
    there = nearest_folder(out).absolute()
    if blocked or not writable(there):
        raise UserError(f"data_dir: {blocked or f'{there}: not writable by you'}, and digits is not prepared there, "
                        f"which the first unit would do; prepare it into a data_dir of yours (collapse-hpc data "
                        f"prepare digits --data-dir DIR, then --set data_dir=DIR)")


def check_images(data_dir: Path, name: str, key: str = "vae.dataset") -> dict:
    """The card of a prepared data set of images; one of text (the lm's, which also has a train and a
    test split) is one line naming the config key `key`."""
    from collapse_hpc.store.cards import read_card

    out = Path(data_dir) / name
    card = read_card(out) or {}
    if "pixel_max" not in card:
        raise UserError(f"{key}: {out} is not a data set of images; name one prepared from images "
                        f"(digits, mnist, or IDX files: data prepare NAME --from FOLDER)")
    tests = (card.get("splits") or {}).get("test")
    if isinstance(tests, int) and tests < MIN_TEST:  # prepared before preparation refused it
        raise UserError(f"{key}: {out}: {_too_few_test(tests)}")
    return card


def _too_few_test(n: int) -> str:
    return (f"the test split holds {n} image{'s' if n != 1 else ''}; give it at least {MIN_TEST} (the Frechet "
            f"distance fits a covariance to their features)")


def load(data_dir: Path, name: str) -> dict[str, Images]:
    """Both splits of a prepared data set, as float32 images in [0, 1]."""
    import pyarrow.parquet as pq

    from collapse_hpc.store.cards import check_against_card

    out = ensure(data_dir, name)
    card = check_images(data_dir, name)
    splits = {}
    for split in SPLITS:
        check_against_card(out / f"{split}.parquet", card)
        try:
            table = pq.read_table(out / f"{split}.parquet")
            h, w = int(table["height"][0].as_py()), int(table["width"][0].as_py())
            pixels = table["pixels"].combine_chunks().flatten().to_numpy()
        except Exception as e:  # truncated or foreign file
            raise UserError(f"{out / split}.parquet: unreadable ({e}); prepare again with --force") from None
        n = table.num_rows
        if pixels.size != n * h * w:
            raise UserError(f"{out / split}.parquet: images are not all {h}x{w}; prepare again with --force")
        images = (pixels.reshape(n, 1, h, w).astype(np.float32) / float(card["pixel_max"]))
        splits[split] = Images(images, table["label"].to_numpy().astype(np.int64))
    return splits
