"""The run's digit classifier: trained once, then read by every generation."""
import errno
import os

import numpy as np
import pytest

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.vae import classifier
from collapse_hpc.experiments.vae.data import Images
from collapse_hpc.store import atomic
from tests.helpers import refuse_reads, safetensors_refuses


def _splits():
    rng = np.random.default_rng(0)
    split = Images(rng.random((40, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, 40))
    return {"train": split, "test": split}


@pytest.mark.parametrize("refusal, refuse", [(errno.EACCES, refuse_reads), (errno.EIO, safetensors_refuses)],
                         ids=["not permitted", "an I/O error"])
def test_a_classifier_the_file_system_will_not_read_now_is_kept_not_trained_again(tmp_path, monkeypatch, refusal,
                                                                                  refuse):
    """A refused read of the cached classifier was taken for a foreign file: it was trained again and
    written over, while the units that had scored with it kept its sha256 in their manifests. Now the unit
    stops in one line naming the file and the error, the classifier kept; once it reads, it is loaded."""
    splits = _splits()
    _, record = classifier.cached(tmp_path, splits, 4, 1, "cpu")
    path = (tmp_path / classifier.FILE).absolute()
    before = (path.stat().st_ino, path.read_bytes())
    refuse(monkeypatch, path, refusal)
    with pytest.raises(UserError) as said:
        classifier.cached(tmp_path, splits, 4, 1, "cpu")
    monkeypatch.undo()
    assert str(said.value) == (f"digit classifier {path}: not read ({os.strerror(refusal)}): kept as it is (not "
                               f"trained again); the run goes on with it once the file reads again (its "
                               f"permissions, the file system): run the same command again")
    assert (path.stat().st_ino, path.read_bytes()) == before
    assert classifier.cached(tmp_path, splits, 4, 1, "cpu")[1] == record
    assert (path.stat().st_ino, path.read_bytes()) == before


def test_a_folder_where_the_classifier_goes_is_one_line_to_move_away_not_trained_over(tmp_path):
    """A folder at the classifier's file (made by hand or a stray tool) failed the unit after training, with the
    rename's raw "IsADirectoryError: ..." line. Now it is named in the project's line, before any training, kept
    as it is; moved away, the classifier is trained and written there."""
    splits = _splits()
    path = tmp_path / classifier.FILE
    path.mkdir()
    (path / "notes").write_text("kept")
    with pytest.raises(UserError) as said:
        classifier.cached(tmp_path, splits, 4, 1, "cpu")
    assert str(said.value) == (f"digit classifier {path}: a folder where a file goes: kept as it is (the classifier "
                               f"is written there); move it away (nothing the run did not write is deleted), then "
                               f"run the same command again")
    assert (path / "notes").read_text() == "kept"
    path.rename(tmp_path / "aside")
    assert classifier.cached(tmp_path, splits, 4, 1, "cpu")[1]["sha256"] == atomic.sha256_file(path)


def test_a_damaged_classifier_is_trained_again(tmp_path):
    splits = _splits()
    _, record = classifier.cached(tmp_path, splits, 4, 1, "cpu")
    path = tmp_path / classifier.FILE
    path.write_bytes(path.read_bytes()[:-10])
    assert classifier.cached(tmp_path, splits, 4, 1, "cpu")[1] == record  # the same seed, the same weights


def test_a_classifier_whose_weights_were_changed_in_place_is_trained_again(tmp_path):
    """Bytes changed inside the classifier's weights left a file that loads: a generation redone after `verify`
    named it scored with it (class entropy 0, Fréchet distance 1e27), its record unchanged. Now it is damage:
    trained again, to the same weights (the same seed)."""
    splits = _splits()
    model, record = classifier.cached(tmp_path, splits, 4, 1, "cpu")
    path = tmp_path / classifier.FILE
    damaged = bytearray(path.read_bytes())
    damaged[-4:] = b"\xff\xff\x7f\x7f"  # the last weight of the head, a float32 still
    path.write_bytes(bytes(damaged))
    again, record_again = classifier.cached(tmp_path, splits, 4, 1, "cpu")
    assert record_again == record
    assert classifier.weights_sha256(again.state_dict()) == classifier.weights_sha256(model.state_dict())


def test_a_classifier_of_an_older_version_without_its_weights_checksum_is_said_once_a_run(tmp_path, caplog):
    """A classifier written before its record kept weights_sha256 loaded silently, its weights unchecked (bytes
    changed inside them would go unnoticed). It is still loaded, as the units before scored with it, and the first
    unit of the run to load it says so in one warning line; the others do not repeat it."""
    import json
    import logging

    from safetensors.torch import load_file, save_file

    splits = _splits()
    model, record = classifier.cached(tmp_path, splits, 4, 1, "cpu")
    path = tmp_path / classifier.FILE
    older = {k: v for k, v in record.items() if k not in ("weights_sha256", "sha256")}
    save_file(load_file(str(path)), str(path), metadata={"record": json.dumps(older, sort_keys=True)})
    with caplog.at_level(logging.WARNING):
        loaded = [classifier.cached(tmp_path, splits, 4, 1, "cpu") for _ in range(3)]  # three units of the run
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"warning: digit classifier {path}: written by an older version, its record without the "
                    f"weights' checksum: loaded unchecked (bytes changed inside its weights would go unnoticed)"]
    assert all(r == {**older, "sha256": atomic.sha256_file(path)} for _, r in loaded)
    assert classifier.weights_sha256(loaded[0][0].state_dict()) == record["weights_sha256"]


@pytest.mark.parametrize("kept_from", ["read-only folder", "full disk", "folder in the way"])
def test_an_unchecked_classifier_whose_note_cannot_be_written_is_still_used(tmp_path, caplog, monkeypatch,
                                                                             kept_from):
    """The note beside an older classifier (it was warned of) only keeps later units quiet: where it could not be
    written (a read-only run folder, a full disk) the unit failed on it. It goes on now, its warning saying the note
    is not kept, and the next unit warns again."""
    import json
    import logging

    from safetensors.torch import load_file, save_file

    from collapse_hpc.errors import MOVE_AWAY

    if kept_from == "read-only folder" and os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder: the full disk and the folder in the way stand for it")
    splits = _splits()
    _, record = classifier.cached(tmp_path, splits, 4, 1, "cpu")
    path = tmp_path / classifier.FILE
    older = {k: v for k, v in record.items() if k not in ("weights_sha256", "sha256")}
    save_file(load_file(str(path)), str(path), metadata={"record": json.dumps(older, sort_keys=True)})
    if kept_from == "read-only folder":
        tmp_path.chmod(0o555)
    elif kept_from == "full disk":
        def full(path, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        monkeypatch.setattr(atomic, "write_text", full)
    else:
        (tmp_path / classifier.UNCHECKED).mkdir()
    try:
        with caplog.at_level(logging.WARNING):
            loaded = [classifier.cached(tmp_path, splits, 4, 1, "cpu") for _ in range(2)]  # two units of the run
    finally:
        tmp_path.chmod(0o755)
    assert all(r == {**older, "sha256": atomic.sha256_file(path)} for _, r in loaded)
    why = {"read-only folder": "Permission denied", "full disk": "No space left on device",
           "folder in the way": f"{tmp_path / classifier.UNCHECKED}: a folder where a file goes, and none is written "
                                f"over a folder; {MOVE_AWAY}"}[kept_from]
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"warning: digit classifier {path}: written by an older version, its record without the "
                    f"weights' checksum: loaded unchecked (bytes changed inside its weights would go unnoticed); "
                    f"{tmp_path / classifier.UNCHECKED} not written ({why}): each unit that loads it says so "
                    f"again"] * 2


def _judge(favoured: int) -> classifier.DigitClassifier:
    """A classifier whose largest output is `favoured` for every image, then 9, 8, … (its head's biases alone)."""
    import torch

    model = classifier.DigitClassifier(64, hidden=4)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.arange(10.0) / 10)
        model.head.bias[favoured] = 5.0
    return model.eval()


def test_generated_images_are_labelled_only_with_the_classes_the_real_images_have():
    """The classifier has 10 outputs whatever the data set: on a user's images labelled 0..4 it gave generated
    images labels 5..9 (99.8% of them class 6 for noise), classes the data never had, which class_5..class_9 counted
    and class_entropy and the real classes' shares lost. Now an image is labelled the likeliest real class."""
    import torch

    from collapse_hpc.experiments.vae import generation, model

    vae = model.ConvVAE(8, 8, latent=2, capacity=2, stages=1)
    test = Images(np.zeros((4, 1, 8, 8), np.float32), np.arange(4))
    row = generation.evaluate(vae, _judge(7), test, 50, 0, torch.device("cpu"), present=np.arange(5))
    assert [row[f"class_{c}"] for c in range(10)] == [0.0] * 4 + [1.0] + [0.0] * 5  # 4: the likeliest of 0..4
    assert row["class_entropy"] == 0 and row["real_classes"] == 5
    images = torch.rand(6, 1, 8, 8)
    assert classifier.predict(_judge(2), images, classes=[0, 2, 4])[0].tolist() == [2] * 6  # a real class kept


def test_ten_classes_are_labelled_as_before(tmp_path):
    """Digits and MNIST have all ten classes: every label, and the classifier's test accuracy, is the plain
    argmax over its ten outputs, as before the labels were kept to the real classes."""
    import torch

    rng = np.random.default_rng(0)
    split = Images(rng.random((40, 1, 8, 8), dtype=np.float32), np.arange(40) % 10)
    model, record = classifier.cached(tmp_path, {"train": split, "test": split}, 4, 1, "cpu")
    images = 30 * torch.randn(500, 1, 8, 8, generator=torch.Generator().manual_seed(0))  # outputs far apart
    with torch.no_grad():
        plain = model(images).argmax(1).numpy()
        accuracy = float((model(torch.from_numpy(split.images)).argmax(1).numpy() == split.labels).mean())
    assert len(set(plain.tolist())) > 1  # not a test of one label
    assert classifier.predict(model, images, classes=range(10))[0].tolist() == plain.tolist()
    assert record["accuracy"] == accuracy
