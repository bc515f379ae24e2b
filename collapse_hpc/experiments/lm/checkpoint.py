"""DeepSpeed training checkpoints read back without unpickling arbitrary objects.

DeepSpeed's own TorchCheckpointEngine loads with torch.load(weights_only=False), which runs any
code a tampered checkpoint file names. Ours loads with weights_only=True and allows, besides
tensors and plain containers, exactly the DeepSpeed types its ZeRO 0/1/2 checkpoints hold
(found by saving real ones and listing what weights_only refuses). Anything else is refused with
one line naming the file and the type. Saved through a file of ours, so that a full disk is the
OSError it was (PyTorch's own writer says it as a RuntimeError without an errno).

A step folder whose files cannot be read (cut short, garbage: a node's crash after its complete.json)
is found before any of it is loaded (unreadable), and set aside under another name (set_aside), so
resume never applies half of a checkpoint, nor stops on one every later job would stop on too. A read
the file system refuses (permissions, an I/O error, a network mount's hiccup) says nothing of the bytes:
it stops the unit in one line naming the file (NotRead), the checkpoint kept for the next job to resume.

API:
- use_weights_only(engine)   swap the engine's checkpoint engine for ours (after deepspeed.initialize)
- safe_types() -> list       the non-tensor types allowed in a checkpoint
- unreadable(step_dir, engine) -> str | None   why a step folder's files cannot be read back; None: they can
- set_aside(step_dir) -> Path                  renamed out of resume's sight (unreadable-<step>), kept beside it
- WeightsOnlyCheckpointEngine, Unreadable, NotRead
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch
from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

from collapse_hpc.errors import UserError, first_line
from collapse_hpc.store import reads, space
from collapse_hpc.store.reads import refused_read


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
SET_ASIDE = "unreadable-"  # a step folder set aside: named so that resume (step*) never reads it


class Unreadable(UserError):
    """A checkpoint file that is not one: cut short, or garbage (not a tampered one, which is refused)."""

    def __init__(self, path: str, why: str):
        super().__init__(f"training checkpoint {path}: {why}; {DELETE}")
        self.why = why


class NotRead(reads.NotRead):
    """A checkpoint file the file system would not read now (reads.refused_read): kept, never set aside."""

    def __init__(self, path, e: BaseException):
        super().__init__(f"training checkpoint {path}", e, "kept as it is (not set aside); training resumes from it")


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
            if refused:
                raise UserError(f"training checkpoint {path}: not loaded (it holds a {refused.group(1)}, not only "
                                f"tensors); {DELETE}") from None
            raise Unreadable(path, "not loaded (not a readable checkpoint)") from None
        except (RuntimeError, EOFError, OSError, ValueError) as e:
            if refused_read(e):
                raise NotRead(path, e) from None
            raise Unreadable(path, f"not readable ({first_line(e)})") from None
        except Exception as e:  # noqa: BLE001 - garbage read as a legacy (non-zip) pickle breaks in any way
            raise Unreadable(path, f"not readable ({type(e).__name__}: {first_line(e)})") from None


def unreadable(step_dir: Path, engine: WeightsOnlyCheckpointEngine) -> str | None:
    """Why step folder `step_dir`'s files cannot be read back, or None. Read whole before the engine loads
    any of them: DeepSpeed applies the model's file before it reads ZeRO's optimizer files, so one of those
    cut short was found with the weights already swapped. A zip file (torch.save's format) is checked by its
    members' CRC-32s, which torch.load never compares (a flipped bit in a tensor loaded silently), at ~2 GB/s;
    any other is loaded as resume loads it. NotRead where the file system refuses a read (refused_read)."""
    files = sorted(step_dir.glob("*.pt"))
    if not any(f.name.endswith("model_states.pt") for f in files):
        return "no model states file in it"
    for f in files:
        try:
            if zipfile.is_zipfile(f):
                with zipfile.ZipFile(f) as z:
                    bad = z.testzip()
                if bad:
                    return f"{f.name}: {bad} does not match its checksum"
            else:
                engine.load(str(f), map_location="cpu")  # a legacy (non-zip) file, or none at all
        except Unreadable as e:
            cut = engine.zipfile_serialization and "failed finding central directory" in e.why
            return f"{f.name}: {'not a whole zip archive (cut short?)' if cut else e.why}"
        except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
            if refused_read(e):
                raise NotRead(f, e) from None
            return f"{f.name}: not readable ({first_line(e)})"
    return None


def set_aside(step_dir: Path) -> Path:
    """Rename `step_dir` to unreadable-<its name> beside it (a free name): out of resume's sight, kept for
    a look (it goes with the training checkpoints once the generation is trained)."""
    n, target = 1, step_dir.with_name(SET_ASIDE + step_dir.name)
    while target.exists():
        n += 1
        target = step_dir.with_name(f"{SET_ASIDE}{step_dir.name}-{n}")
    step_dir.rename(target)
    return target


def use_weights_only(engine) -> None:
    current = type(engine.checkpoint_engine)
    if current is not TorchCheckpointEngine:  # a writer or datastates engine: not ours to replace
        raise UserError(f"DeepSpeed checkpoint engine {current.__name__}: only the torch engine is supported")
    engine.checkpoint_engine = WeightsOnlyCheckpointEngine(engine._config)
