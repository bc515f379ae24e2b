"""DeepSpeed training checkpoints read back without unpickling arbitrary objects.

DeepSpeed's own TorchCheckpointEngine loads with torch.load(weights_only=False), which runs any
code a tampered checkpoint file names. Ours loads with weights_only=True and allows, besides
tensors and plain containers, exactly the DeepSpeed types its ZeRO 0/1/2 checkpoints hold
(found by saving real ones and listing what weights_only refuses). Anything else is refused with
one line naming the file and the type.

API:
- use_weights_only(engine)   swap the engine's checkpoint engine for ours (after deepspeed.initialize)
- safe_types() -> list       the non-tensor types allowed in a checkpoint
- WeightsOnlyCheckpointEngine
"""
from __future__ import annotations

import pickle
import re

import torch
from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

from collapse_hpc.errors import UserError


def safe_types() -> list:
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    # ZeRO 1/2 optimizer states: the stage, the (static) loss scaler, each parameter's slice
    return [ZeroStageEnum, LossScaler, fragment_address]


class WeightsOnlyCheckpointEngine(TorchCheckpointEngine):
    """torch.save like DeepSpeed's; torch.load with weights_only=True."""

    def load(self, path: str, map_location=None):
        try:
            with torch.serialization.safe_globals(safe_types()):
                return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
            why = f"it holds a {refused.group(1)}, not only tensors" if refused else "not a readable checkpoint"
            raise UserError(f"training checkpoint {path}: not loaded ({why}); delete its step folder to "
                            f"resume from an earlier one or train afresh") from None
        except (RuntimeError, EOFError, OSError) as e:
            raise UserError(f"training checkpoint {path}: not readable ({str(e).splitlines()[0][:120]}); "
                            f"delete its step folder to resume from an earlier one") from None


def use_weights_only(engine) -> None:
    current = type(engine.checkpoint_engine)
    if current is not TorchCheckpointEngine:  # a writer or datastates engine: not ours to replace
        raise UserError(f"DeepSpeed checkpoint engine {current.__name__}: only the torch engine is supported")
    engine.checkpoint_engine = WeightsOnlyCheckpointEngine(engine._config)
