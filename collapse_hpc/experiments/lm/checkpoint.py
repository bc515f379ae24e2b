"""DeepSpeed training checkpoints read back without unpickling arbitrary objects.

DeepSpeed's own TorchCheckpointEngine loads with torch.load(weights_only=False), which runs any
code a tampered checkpoint file names. Ours loads with weights_only=True and allows, besides
tensors and plain containers, exactly the DeepSpeed types its ZeRO 0/1/2 checkpoints hold
(found by saving real ones and listing what weights_only refuses). Anything else is refused with
one line naming the file and the type. Saved through a file of ours, so that a full disk is the
OSError it was (PyTorch's own writer says it as a RuntimeError without an errno).

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

from collapse_hpc.errors import UserError, first_line
from collapse_hpc.store import space


def safe_types() -> list:
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    # ZeRO 1/2 optimizer states: the stage, the (static) loss scaler, each parameter's slice
    return [ZeroStageEnum, LossScaler, fragment_address]


class _Writes:
    """The file torch.save writes into, keeping the OSError a write got: PyTorch's writer turns it
    into a RuntimeError of its own words without an errno ("PytorchStreamWriter failed writing file
    …", "unexpected pos …")."""

    def __init__(self, f):
        self.f, self.refused = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.refused = self.refused or e
            raise

    def flush(self) -> None:
        self.f.flush()


# training keeps its latest complete checkpoint only (train.py removes the earlier ones once it is saved)
DELETE = ("delete its step folder: the generation then trains from its start (from an earlier step folder, "
          "where one is left)")


class WeightsOnlyCheckpointEngine(TorchCheckpointEngine):
    """torch.save like DeepSpeed's, its refusals said plainly; torch.load with weights_only=True."""

    def save(self, state_dict, path: str):
        """torch.save to `path`; a write the file system refuses (a full disk, a quota, a read-only
        remount) is raised as the OSError it was, naming `path` (space.named): the unit's FAILED line
        then says which file system and what to do, as every other write of the run does."""
        writes = None
        try:
            with open(path, "wb") as f:
                writes = _Writes(f)
                torch.save(state_dict, writes, _use_new_zipfile_serialization=self.zipfile_serialization)
        except (OSError, RuntimeError) as e:
            said = space.named((writes.refused if writes else None) or e, path)
            if said is e:
                raise
            raise said from e

    def load(self, path: str, map_location=None):
        try:
            with torch.serialization.safe_globals(safe_types()):
                return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
            why = f"it holds a {refused.group(1)}, not only tensors" if refused else "not a readable checkpoint"
            raise UserError(f"training checkpoint {path}: not loaded ({why}); {DELETE}") from None
        except (RuntimeError, EOFError, OSError) as e:
            raise UserError(f"training checkpoint {path}: not readable ({first_line(e)}); {DELETE}") from None


def use_weights_only(engine) -> None:
    current = type(engine.checkpoint_engine)
    if current is not TorchCheckpointEngine:  # a writer or datastates engine: not ours to replace
        raise UserError(f"DeepSpeed checkpoint engine {current.__name__}: only the torch engine is supported")
    engine.checkpoint_engine = WeightsOnlyCheckpointEngine(engine._config)
