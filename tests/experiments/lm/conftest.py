"""Small shared fixtures for the LM tests: a few KB of text prepared as a data set, its BPE
tokenizer and a tiny OPT config, all built locally (no download)."""
import numpy as np
import pytest

ADJ = "old new small large red quiet early famous northern ancient".split()
NOUN = "river city king poet engine forest bridge island school army".split()
VERB = "crosses builds follows describes defends visits names rules".split()
PLACE = "in the north,in the valley,near the coast,after the war,during the winter".split(",")


def corpus_lines(n: int, seed: int) -> list[str]:
    """Simple English-like sentences with structure a tiny model can learn quickly."""
    rng = np.random.default_rng(seed)
    pick = lambda words: words[rng.integers(len(words))]  # noqa: E731
    return [f"The {pick(ADJ)} {pick(NOUN)} {pick(VERB)} the {pick(ADJ)} {pick(NOUN)} {pick(PLACE)}."
            for _ in range(n)]


def write_corpus(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 600, 0), ("validation", 80, 1), ("test", 80, 2)):
        (folder / f"{split}.txt").write_text("\n".join(corpus_lines(n, seed)) + "\n")
    return folder


def tiny_cfg(**overrides):
    from collapse_hpc.experiments.lm.config import LMConfig

    base = dict(dataset="tiny", model="tiny", pretrained=False, vocab_size=300, hidden_size=32, layers=2,
                heads=2, ffn_size=64, block_size=16, epochs=2, lr=3e-3, lr_min=1e-4, batch_size=16,
                micro_batch_size=8, eval_batch_size=32)
    base.update(overrides)
    return LMConfig(**base)


@pytest.fixture(scope="session")
def lm_data_dir(tmp_path_factory):
    """A data dir holding the prepared data set `tiny` (~40 KB of text) and its 300-token BPE."""
    from collapse_hpc.experiments.lm.data import prepare_local
    from collapse_hpc.experiments.lm.tokenizer import bpe_tokenizer

    root = tmp_path_factory.mktemp("lm")
    data_dir = root / "data"
    prepare_local("tiny", write_corpus(root / "source"), data_dir)
    bpe_tokenizer(data_dir, "tiny", 300)
    return data_dir


@pytest.fixture(scope="session")
def lm_tokenizer(lm_data_dir):
    from collapse_hpc.experiments.lm.tokenizer import load_tokenizer

    return load_tokenizer(tiny_cfg(), lm_data_dir)


@pytest.fixture(scope="session")
def lm_blocks(lm_data_dir, lm_tokenizer):
    from collapse_hpc.experiments.lm.data import load_blocks

    return {s: load_blocks(lm_data_dir, "tiny", s, lm_tokenizer, 16) for s in ("train", "validation", "test")}


@pytest.fixture
def lm_model(lm_data_dir, lm_tokenizer):
    from collapse_hpc.experiments.lm.model import build_model

    return build_model(tiny_cfg(), lm_tokenizer, lm_data_dir)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from threads, and spinning threads stall a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
