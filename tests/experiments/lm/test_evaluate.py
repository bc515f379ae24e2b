"""Perplexity: exp of the token-weighted mean loss, per block and over a corpus; vocabulary checks."""
import errno
import math
import os

import numpy as np
import pytest
import torch

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.lm import evaluate
from collapse_hpc.experiments.lm.data import block_array
from collapse_hpc.experiments.lm.model import build_model, check_vocab, load_model, model_fingerprint
from tests.experiments.lm.conftest import tiny_cfg


def test_perplexity_matches_the_models_own_loss(lm_model, lm_blocks):
    blocks = lm_blocks["test"]
    ids = torch.from_numpy(block_array(blocks))
    lm_model.eval()
    with torch.no_grad():
        per_block = [lm_model(input_ids=ids[i:i + 1], labels=ids[i:i + 1]).loss.item() for i in range(len(ids))]
    corpus, per_seq = evaluate.perplexity(lm_model, blocks, batch_size=4, device="cpu")
    np.testing.assert_allclose(per_seq, np.exp(per_block), rtol=1e-5)
    assert corpus == pytest.approx(math.exp(np.mean(per_block)), rel=1e-5)  # equal lengths: plain mean
    assert evaluate.mean_loss(lm_model, blocks, 3) == pytest.approx(np.mean(per_block), rel=1e-5)
    corpus1, per_seq1 = evaluate.perplexity(lm_model, blocks, batch_size=1, device="cpu")
    np.testing.assert_allclose(per_seq1, per_seq, rtol=1e-5)
    table = evaluate.perplexity_table(blocks, per_seq)
    assert table.column_names == ["block_id", "ppl"] and table.num_rows == blocks.num_rows
    np.testing.assert_array_equal(table.column("ppl").to_numpy(), per_seq)
    with pytest.raises(ValueError, match="perplexities for"):
        evaluate.perplexity_table(blocks, per_seq[:-1])


def test_a_random_model_is_near_uniform(lm_model, lm_blocks, lm_tokenizer):
    corpus, _ = evaluate.perplexity(lm_model, lm_blocks["validation"], 8)
    assert 0.5 * len(lm_tokenizer) < corpus < 2 * len(lm_tokenizer)


def test_tokenizer_that_does_not_fit_the_model_is_a_user_error(lm_data_dir, lm_tokenizer, lm_blocks):
    from collapse_hpc.experiments.lm.tokenizer import load_tokenizer

    big = load_tokenizer(tiny_cfg(vocab_size=400), lm_data_dir)
    model = build_model(tiny_cfg(), lm_tokenizer, lm_data_dir)
    with pytest.raises(UserError, match="do not belong together"):
        check_vocab(model, big)
    ids = block_array(lm_blocks["test"])
    ids[0, 3] = len(lm_tokenizer) + 5
    with pytest.raises(UserError, match="another tokenizer"):
        evaluate.perplexity(model, ids, 4)


def test_saved_models_reload_and_fingerprint(lm_model, tmp_path):
    lm_model.save_pretrained(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert all(torch.equal(a, b) for a, b in zip(lm_model.state_dict().values(), again.state_dict().values()))
    assert model_fingerprint(tmp_path / "m") == model_fingerprint(tmp_path / "m") != ""
    with pytest.raises(UserError, match="no saved model"):
        load_model(tmp_path / "nothing")


def test_hub_model_offline_is_a_user_error(lm_tokenizer, lm_data_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="facebook/opt-125m"):
        build_model(tiny_cfg(model="facebook/opt-125m", pretrained=True), lm_tokenizer, lm_data_dir)


def test_tiny_base_is_pretrained_once_and_cached(lm_data_dir, lm_tokenizer, lm_blocks):
    cfg = tiny_cfg(pretrained=True, pretrain_epochs=3, pretrain_batch_size=16, pretrain_lr=1e-2)
    from collapse_hpc.experiments.lm.model import base_fingerprint

    def bases():  # other tests of the session may have cached bases of their own settings
        return {f.name for f in (lm_data_dir / "tiny" / "base").iterdir() if f.is_dir()}

    base = build_model(cfg, lm_tokenizer, lm_data_dir)
    assert base_fingerprint(cfg, lm_tokenizer) in bases()
    before = bases()
    random = build_model(tiny_cfg(), lm_tokenizer, lm_data_dir)
    assert evaluate.mean_loss(base, lm_blocks["validation"]) < \
        evaluate.mean_loss(random, lm_blocks["validation"]) - 0.5
    again = build_model(cfg, lm_tokenizer, lm_data_dir)  # from the cache: the same weights
    assert bases() == before
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), again.state_dict().values()))


def test_tiny_base_folder_is_readable_by_the_group(lm_data_dir, lm_tokenizer):
    # data/ is shared on a cluster: the cached base must not keep mkdtemp's 0700
    from collapse_hpc.experiments.lm.model import base_fingerprint

    cfg = tiny_cfg(pretrained=True, pretrain_epochs=1, pretrain_blocks=16, pretrain_lr=7e-3)
    old = os.umask(0o022)
    try:
        build_model(cfg, lm_tokenizer, lm_data_dir)
    finally:
        os.umask(old)
    folder = lm_data_dir / "tiny" / "base" / base_fingerprint(cfg, lm_tokenizer)
    assert folder.stat().st_mode & 0o777 == 0o755


def test_tiny_base_without_flock(lm_data_dir, lm_tokenizer, monkeypatch):
    """A data/ on a file system without flock (ENOLCK): the base is still built, unlocked, as the
    VAE classifier's cache is (both are deterministic and written atomically)."""
    import errno
    import fcntl

    def no_flock(*_):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    cfg = tiny_cfg(pretrained=True, pretrain_epochs=1, pretrain_blocks=16, pretrain_lr=3e-3)
    build_model(cfg, lm_tokenizer, lm_data_dir)


def test_loss_split_by_the_class_of_the_target_token(lm_model, lm_blocks):
    """score(classes=...) sums each predicted token's loss under its target's class: the classes'
    token-weighted losses make up the whole, and each equals the loss over those targets alone."""
    import torch.nn.functional as F

    from collapse_hpc.experiments.lm import metrics

    blocks = lm_blocks["test"]
    ids = torch.from_numpy(block_array(blocks))
    vocab = lm_model.get_input_embeddings().num_embeddings
    classes = metrics.token_classes(metrics.token_counts(block_array(lm_blocks["train"]), vocab - 5), 0.1, 0.5)
    lm_model.eval()
    with torch.no_grad():
        logits = lm_model(input_ids=ids).logits[:, :-1]
    losses = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none").numpy()
    target = ids[:, 1:].numpy()
    cls = np.where(target < len(classes), classes[np.minimum(target, len(classes) - 1)], metrics.RARE)
    s = evaluate.score(lm_model, blocks, batch_size=5, device="cpu", classes=classes)
    assert s.corpus_ppl == pytest.approx(math.exp(losses.mean()), rel=1e-5)
    for k in range(len(metrics.CLASSES)):
        assert (cls == k).any(), metrics.CLASSES[k]
        assert s.class_ppl(k) == pytest.approx(math.exp(losses[cls == k].mean()), rel=1e-5)
    assert s.sums[:, 3::2].sum() == s.sums[:, 1].sum() == losses.size
    assert evaluate.score(lm_model, blocks, batch_size=5, device="cpu").sums.shape == (len(ids), 2)


def test_tiny_base_never_sees_the_chains_training_blocks(lm_data_dir, lm_tokenizer, lm_blocks, monkeypatch):
    """The tiny base (the stand-in for pretrained OPT) pretrains on the train blocks after the first
    max_train_blocks, which every generation trains on and continues; with no block left over it
    pretrains on those and says so (the report then labels it: not zero-shot)."""
    from collapse_hpc.experiments.lm import model as models

    seen = []
    pretrain = models.pretrain
    monkeypatch.setattr(models, "pretrain", lambda m, blocks, cfg, **kw: (seen.append(blocks.copy()),
                                                                          pretrain(m, blocks, cfg, **kw)))
    cfg = tiny_cfg(pretrained=True, max_train_blocks=48, pretrain_blocks=32, pretrain_lr=5.5e-3)
    build_model(cfg, lm_tokenizer, lm_data_dir)
    np.testing.assert_array_equal(seen[0], block_array(lm_blocks["train"])[48:80])
    assert models.initial_model(cfg, lm_data_dir, lm_tokenizer) == {
        "kind": "tiny-base", "model": "tiny", "train_blocks": [48, 80], "block_grouping": "corpus",
        "disjoint_from_training_blocks": True}
    every = tiny_cfg(pretrained=True, pretrain_blocks=16, pretrain_lr=5.5e-3)  # max_train_blocks 0: all of them
    info = models.initial_model(every, lm_data_dir, lm_tokenizer)
    assert info["train_blocks"] == [0, 16] and info["disjoint_from_training_blocks"] is False
    assert models.initial_model(tiny_cfg(), lm_data_dir, lm_tokenizer)["kind"] == "random"
    assert models.pretrain_range(100, tiny_cfg(max_train_blocks=100)) == (0, 100, False)
    assert models.pretrain_range(100, tiny_cfg(max_train_blocks=60, pretrain_blocks=80)) == (60, 100, True)


@pytest.mark.parametrize("refusal", [errno.EACCES, errno.EIO], ids=["EACCES", "EIO"])
def test_a_tiny_base_record_the_file_system_will_not_read_is_said_naming_it(tmp_path, monkeypatch, refusal):
    """The tiny base's base.json (which train blocks pretrained it, for generation 0's manifest) read refused
    went up as a raw OSError, an EIO's naming no file. It is one line naming it, the base kept."""
    from collapse_hpc.experiments.lm import model as models
    from collapse_hpc.store.reads import NotRead
    from tests.helpers import refuse_reads

    base = tmp_path / "base"
    base.mkdir()
    (base / models.BASE_INFO).write_text('{"train_blocks": [48, 80]}')
    monkeypatch.setattr(models, "tiny_base", lambda cfg, tokenizer, data_dir: base)
    refuse_reads(monkeypatch, base / models.BASE_INFO, refusal)
    with pytest.raises(NotRead) as said:
        models.initial_model(tiny_cfg(pretrained=True), tmp_path, None)
    assert str(said.value) == (f"tiny base's record {base / models.BASE_INFO}: not read ({os.strerror(refusal)}): "
                               f"kept as it is; the command goes on with it once the file reads again (its "
                               f"permissions, the file system): run the same command again")
    monkeypatch.undo()
    monkeypatch.setattr(models, "tiny_base", lambda cfg, tokenizer, data_dir: base)
    assert models.initial_model(tiny_cfg(pretrained=True), tmp_path, None)["train_blocks"] == [48, 80]
