"""A generation's training lets its model go: nothing of DeepSpeed's (its engine, ZeRO's module-level
stack and caches) keeps the model or any of its modules once the unit drops it."""
import gc
import weakref

import pytest

from collapse_hpc.experiments.lm import train
from tests.experiments.lm.conftest import tiny_cfg


def _holders(obj) -> list[str]:
    """What refers to `obj`, by type (a module-level list, an lru_cache's key tuple …), for the message."""
    return sorted({type(r).__name__ for r in gc.get_referrers(obj) if type(r) is not list or r is not obj})


@pytest.mark.parametrize("stage, chunk", [(1, 1024), (2, 1024), (3, 1024), (3, 0)])
def test_no_module_of_the_model_outlives_its_training(stage, chunk, lm_data_dir, lm_tokenizer, lm_blocks, tmp_path):
    """ZeRO-3 pushed the engine's module on deepspeed's FWD_MODULE_STACK (a module-level list, never popped)
    and its parameter coordinator's lru_cache keyed entries by submodule: a unit's model, its weights and
    gradients stayed in memory after its training, one more model per generation trained in the process.
    The engine's module: the chunked loss's head around the model, or (no chunked loss) the model itself."""
    import torch

    from collapse_hpc.experiments.lm.model import build_model

    cfg = tiny_cfg(zero_stage=stage, loss_chunk_tokens=chunk, epochs=1)
    model = build_model(cfg, lm_tokenizer, lm_data_dir)
    modules = [weakref.ref(m) for m in model.modules()]
    train.train_generation(model, lm_tokenizer, lm_blocks["train"].slice(0, 64), lm_blocks["validation"], cfg,
                           tmp_path / "model", tmp_path / "ckpt", seed=0, rank=0, world_size=1, local_rank=0)
    del model
    gc.collect()
    left = [m() for m in modules if m() is not None]
    assert not left, (len(left), _holders(left[0]))
    kept = [o for o in gc.get_objects() if type(o) is torch.nn.Parameter and hasattr(o, "ds_id")]
    assert not kept, f"{len(kept)} of ZeRO-3's parameters are still held"
