"""The digit classifier that labels generated images: trained once per run on real data.

A small MLP (pixels -> 2*hidden -> hidden -> 10); its `hidden`-wide penultimate layer gives
the features of the Frechet distance. It is trained with a fixed seed, so every process that
needs it gets the same weights; the first one trains it and caches it in the run folder
(runs/<run>/vae/classifier/<dataset>-h<hidden>-e<epochs>/classifier.safetensors, written
atomically under a file lock), the others load it.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from collapse_hpc.errors import UserError, first_line
from collapse_hpc.experiments.vae.metrics import EVAL_BATCH
from collapse_hpc.store import atomic
from collapse_hpc.store.lock import file_lock
from collapse_hpc.store.reads import NotRead, refused_read, safetensors_open

SEED = 0  # the classifier is part of the yardstick, not of a variant: one seed for all
LR = 1e-3
BATCH = 128
FILE = "classifier.safetensors"
UNCHECKED = ".unchecked"  # beside FILE: the sha256 of an unchecked classifier already warned of


class DigitClassifier(nn.Module):
    def __init__(self, pixels: int, hidden: int = 128, classes: int = 10):
        super().__init__()
        self.arch = {"pixels": pixels, "hidden": hidden, "classes": classes}
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(pixels, 2 * hidden), nn.ReLU(),
                                  nn.Linear(2 * hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@torch.no_grad()
def predict(model: DigitClassifier, images: torch.Tensor, batch: int = EVAL_BATCH,
            classes=None) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels and penultimate features (float64) of images (N, 1, H, W) in [0, 1]. `classes`: the
    labels it may give (those of the real training images); the head's outputs of any other (it has 10,
    whatever the data set's) are no class of the data: an image is labelled the likeliest of `classes`."""
    absent = None
    if classes is not None:
        absent = torch.ones(model.head.out_features, dtype=torch.bool)
        absent[torch.as_tensor(np.asarray(classes), dtype=torch.long)] = False
        absent = absent.to(next(model.parameters()).device) if absent.any() else None  # digits: every output
    labels, feats = [], []
    for start in range(0, len(images), batch):
        f = model.features(images[start:start + batch])
        logits = model.head(f)
        if absent is not None:
            logits = logits.masked_fill(absent, -torch.inf)
        labels.append(logits.argmax(1).cpu())
        feats.append(f.double().cpu())
    return torch.cat(labels).numpy(), torch.cat(feats).numpy()


def train(train_x: np.ndarray, train_y: np.ndarray, hidden: int, epochs: int, device) -> DigitClassifier:
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    x = torch.from_numpy(train_x).to(device)
    y = torch.from_numpy(train_y).to(device)
    model = DigitClassifier(x[0].numel(), hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(BATCH):
            idx = idx.to(device)
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def cached(folder: Path, splits, hidden: int, epochs: int, device,
           log: logging.Logger | None = None) -> tuple[DigitClassifier, dict]:
    """The run's classifier (trained on first use) and its record: test accuracy, sha256."""
    from safetensors.torch import save_file

    path = folder / FILE
    with file_lock(folder / ".lock") as locked:  # the first process trains, the others wait and load
        if locked:  # no other writer of it is alive: a temporary there is a killed one's
            atomic.sweep(folder, FILE)
        if path.is_dir():  # made by hand or a stray tool: said before training, not at the write after it
            raise NotRead(f"digit classifier {path}", IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)),
                          "kept as it is (the classifier is written there)")
        if path.is_file():
            try:
                model, meta = _load(path)
                loaded = model.to(device).eval(), {**meta, "sha256": atomic.sha256_file(path)}
            except Exception as e:  # a foreign or damaged file: train it again below
                if refused_read(e):  # not its bytes: the units that scored with it recorded its sha256
                    raise NotRead(f"digit classifier {path}", e, "kept as it is (not trained again); the run goes "
                                  "on with it") from None
                (log or logging.getLogger("collapse_hpc")).warning(
                    "warning: digit classifier %s: damaged (%s): trained again", path, e)
            else:
                if "weights_sha256" not in meta:
                    _unchecked(path, loaded[1]["sha256"], log or logging.getLogger("collapse_hpc"))
                return loaded
        if log:
            log.info("training the digit classifier (%d epochs) -> %s", epochs, path)
        train_set, test_set = splits["train"], splits["test"]
        model = train(train_set.images, train_set.labels, hidden, epochs, device)
        predicted, _ = predict(model, torch.from_numpy(test_set.images).to(device), classes=np.unique(train_set.labels))
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        record = {"arch": model.arch, "epochs": epochs, "seed": SEED,
                  "accuracy": float((predicted == test_set.labels).mean()), "weights_sha256": weights_sha256(state)}
        with atomic.atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata={"record": json.dumps(record, sort_keys=True)})
        return model, {**record, "sha256": atomic.sha256_file(path)}


def _load(path: Path) -> tuple[DigitClassifier, dict]:
    """The cached classifier and its record. Weights other than those its record was written with (bytes changed
    inside a file that still loads) are damage: scored with, every later generation's labels would be garbage.
    A record from before weights_sha256 was kept is loaded as it is."""
    from safetensors.torch import load_file

    with safetensors_open(path) as f:
        meta = json.loads(f.metadata()["record"])
    state = load_file(str(path))
    if meta.get("weights_sha256", weights_sha256(state)) != weights_sha256(state):
        raise ValueError("its weights are not those it was written with")
    model = DigitClassifier(**meta["arch"])
    model.load_state_dict(state)
    return model, meta


def _unchecked(path: Path, sha256: str, log: logging.Logger) -> None:
    """One line, from the first unit of the run that loads it (its folder's lock held), for a classifier whose
    record was written before weights_sha256 was kept: its weights cannot be checked against it. The note that
    keeps the later units quiet is no result: where it cannot be written (a read-only folder, a full disk) the
    unit goes on, and its line says the later ones will warn again."""
    said = path.parent / UNCHECKED
    with contextlib.suppress(OSError):
        if said.read_text().strip() == sha256:
            return
    try:
        atomic.write_text(said, sha256 + "\n")
        again = ""
    except (OSError, UserError) as e:  # UserError: a folder in its place (atomic's own line)
        why = e.strerror if isinstance(e, OSError) and e.strerror else first_line(e, None)
        again = f"; {said} not written ({why}): each unit that loads it says so again"
    log.warning("warning: digit classifier %s: written by an older version, its record without the weights' "
                "checksum: loaded unchecked (bytes changed inside its weights would go unnoticed)%s", path, again)


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict (names, dtypes, shapes, values), as saved and as loaded."""
    h = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()
