"""Fine-tune one generation as a DeepSpeed engine on 1..N ranks (CPU over gloo, GPU over nccl).

The reference's recipe: AdamW (torch's, unless `fused_adam`), lr 2e-5 with cosine annealing per
epoch down to 1e-6, 5 epochs, global batch 128 (split over ranks, gradient accumulation as
needed), validation loss after every epoch (scored as config `eval_precision`, fp32 by default), and the
best-validation model kept (the epoch with the lowest validation loss, not the last). bf16 on GPU,
fp32 on CPU; ZeRO stage 0-3, and `lm.deepspeed` merged over the generated DeepSpeed config
(ds_config). On GPU, bf16 by default means torch autocast over fp32 weights (DeepSpeed's
`torch_autocast`, as Lightning's bf16-mixed): measured 2x faster than DeepSpeed's bf16 weights +
fp32 master copies for OPT-125M on an H100; `precision: bf16` selects the latter.

Loss and compilation: the engine wraps loss.LossHead (the next-token loss from the decoder's last
hidden states, `loss_chunk_tokens` tokens of vocabulary logits at a time, gradients taken in the
same pass; HF's loss with 0 and for other architectures; under ZeRO-3 the output embedding is the
head's external parameter, gathered for its forward and backward); no KV cache is built.
`compile` torch.compiles that module (backend and mode from the config) with static shapes: every
micro-batch is micro x block_size, and validation runs the uncompiled model, so it compiles once.
The summary's `startup` holds the seconds of DeepSpeed's import and initialisation and of the first
optimizer step (with compile, mostly the compilation).

Data order: each epoch shuffles the blocks with a generator seeded by (seed, epoch), pads the
order to whole global batches by wrapping around (as DistributedSampler does), and every optimizer
step deals its 128 blocks out as disjoint micro-batches to the ranks. Dropout is reseeded before
every forward from (seed, step, the micro-batch's position in the global batch), never from the
rank, and the recorded losses are means over the whole global batch (summed over the ranks): the
ranks are only a speed knob. 1 or N ranks compute the same steps on the same micro-batches with the
same dropout, up to the order of floating-point sums, as long as `micro_batch_size` divides
batch_size / ranks (else batch_plan lowers the micro-batch, and the dropout masks differ). A run is
deterministic for a seed and a resumed run replays exactly what an uninterrupted one would have done.

Precision: the model arrives in float32 (model.py loads every checkpoint so); those are the master
weights the optimizer updates under fp32 and bf16-mixed, and DeepSpeed keeps float32 master copies
of its bf16 weights under `bf16`, with gradients accumulated and all-reduced in float32 (ZeRO 0
and 1 both run as DeepSpeed's ZeRO-1 BF16_Optimizer then: one flat master tensor, one optimizer
tensor, one host sync per step; the summary's zero_stage says 1). training.json records what ran:
master_dtype (the optimizer's parameters), compute_dtype (the module's weights in the forward
pass), autocast_dtype (or None) and saved_dtype (the published model's tensors: float32, as
load_model reloads the best one; under `precision: bf16` they hold bf16 values).

Checkpoints: a DeepSpeed checkpoint into ckpt_dir/step<N>/ after every epoch (and every
`checkpoint_every_steps` steps), saved on ALL ranks; once every rank has returned from
save_checkpoint, rank 0 writes ckpt_dir/step<N>/complete.json, with each file's size and sha256 and its own
checksum: one that no longer vouches for its files is set aside, as an unreadable one. On start the latest complete
checkpoint is resumed (torch.load with weights_only=True, see checkpoint.py); incomplete ones (a
save a full disk or a kill cut short) are removed by rank 0 first, before any rank writes. The
cosine schedule is handed to deepspeed.initialize as a callable, so it wraps the torch optimizer
under every ZeRO stage and precision. The best model so far lives in
ckpt_dir/best/ (save_pretrained, written atomically by rank 0). At the end rank 0 publishes it,
with the tokenizer, to out_dir (a temporary sibling renamed into place).

API:
- train_generation(model, tokenizer, train_blocks, val_blocks, cfg, out_dir, ckpt_dir, *, seed,
      rank, world_size, local_rank, log) -> dict summary:
      best_val_loss, best_epoch, val_loss (per epoch), train_loss (per epoch), epochs, steps,
      tokens, tokens_per_s, seconds, epoch_seconds (training time of each epoch; a resumed job's
      tokens and seconds count every attempt's up to the checkpoint it resumed from, as its steps
      do), resumed_from (global step, or None), master_dtype, compute_dtype, autocast_dtype, saved_dtype,
      loss ('hf' or 'chunked (N tokens)'), startup ({deepspeed_import, deepspeed_init,
      first_step} seconds)
  `model` is consumed (moved to the device, possibly cast to bf16); reload from out_dir.
  out_dir is replaced as a whole when training ends: keep ckpt_dir outside it (a ckpt_dir inside
  it is discarded then, and a kill during that last rename loses it). With `last_dir` the weights
  after the last epoch are saved there too (before out_dir, so a finished out_dir implies it):
  what the authors' main.py samples from when it trains and generates in one call.
- batch_plan(batch_size, micro_batch_size, world_size) -> (micro, accumulation)
- ds_config(cfg, micro, accumulation, world_size, precision) -> dict
- resolve_precision(cfg, device) -> 'bf16-mixed' | 'bf16' | 'fp32'
- epoch_order(n, seed, epoch, length) -> np.ndarray
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np

from collapse_hpc.errors import UserError, first_line
from collapse_hpc.experiments.lm import distributed
from collapse_hpc.store import atomic
from collapse_hpc.logs import count

COMPLETE = "complete.json"


def batch_plan(batch_size: int, micro_batch_size: int, world_size: int) -> tuple[int, int]:
    """Per-rank micro batch and gradient-accumulation steps that make up the global batch."""
    per_rank, rest = divmod(batch_size, world_size)
    if rest or per_rank == 0:
        raise UserError(f"batch_size {batch_size} cannot be split evenly over {world_size} ranks")
    micro = min(micro_batch_size, per_rank)
    while per_rank % micro:
        micro -= 1
    return micro, per_rank // micro


def resolve_precision(cfg, device) -> str:
    """bf16-mixed, bf16 or fp32 for this device (auto: bf16-mixed on GPU, fp32 on CPU)."""
    if cfg.precision == "auto":
        return "bf16-mixed" if device.type == "cuda" else "fp32"
    return cfg.precision


def ds_config(cfg, micro: int, accumulation: int, world_size: int, precision: str) -> dict:
    conf = {
        "train_batch_size": micro * accumulation * world_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accumulation,
        "zero_optimization": {"stage": cfg.zero_stage},
        "zero_allow_untested_optimizer": True,  # torch's AdamW under ZeRO 1/2
        "bf16": {"enabled": precision == "bf16"},
        "torch_autocast": {"enabled": precision == "bf16-mixed", "dtype": "bfloat16"},
        "gradient_clipping": 0.0,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    if cfg.fused_adam:
        conf["optimizer"] = {"type": "AdamW", "params": {"lr": cfg.lr, "weight_decay": cfg.weight_decay}}
    if precision == "bf16":
        # gradients accumulated and all-reduced in fp32, what the fp32 master weights are updated from
        conf["data_types"] = {"grad_accum_dtype": "fp32"}
        conf["communication_data_type"] = "fp32"
    return _bf16_from_zero1(merge(conf, cfg.deepspeed or {}), precision)


def check_deepspeed(key: str, cfg) -> None:
    """lm.deepspeed as DeepSpeed reads it, before any unit starts: a key it refuses (a nested typo,
    zero_optimization: {stag: 1}; a value of the wrong type) failed each generation's job with pydantic's
    traceback once queued; a misspelt top-level key (zero_optimisation:) it ignores, training without it.
    One rank, one micro-batch: the batch keys are ours, not the user's."""
    if not cfg.deepspeed:
        return
    from collapse_hpc.experiments.lm.deepspeed_keys import Lookups, unread

    # its import's "Setting accelerator to CPU" is no word of this check (its logger is made, at WARNING, then)
    level = logging.root.manager.disable
    logging.disable(logging.WARNING)
    conf = Lookups(ds_config(cfg, 1, 1, 1, "bf16" if cfg.precision == "bf16" else "fp32"))
    try:
        from deepspeed.runtime.config import DeepSpeedConfig

        DeepSpeedConfig(conf)
    except Exception as e:  # pydantic's ValidationError, DeepSpeed's own errors and asserts
        errors = getattr(e, "errors", None)
        said = ("; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in errors())
                if callable(errors) else str(e) or type(e).__name__)
        title = getattr(e, "title", None)
        raise UserError(f"{key}: DeepSpeed refuses it ({f'{title}: ' if title else ''}"
                        f"{' '.join(said.split())})") from None
    finally:
        logging.disable(level)
    if ignored := unread(cfg.deepspeed, conf):
        names = ", ".join(name + (f" (did you mean {closest}?)" if closest else "") for name, closest in ignored)
        raise UserError(f"{key}: DeepSpeed reads no top-level key {names}: it would train without "
                        f"{'it' if len(ignored) == 1 else 'them'}, silently")


def zero_stage(conf: dict) -> int:
    """The ZeRO stage a DeepSpeed config asks for (DeepSpeed's default: 0)."""
    return conf.get("zero_optimization", {}).get("stage", 0)


def _bf16_from_zero1(conf: dict, precision: str) -> dict:
    """DeepSpeed takes bf16 weights with fp32 gradients from ZeRO-1 on only (its BF16_Optimizer: one
    flat fp32 master copy, one optimizer tensor, one host sync per step); on one rank ZeRO-1 is
    ZeRO-0. Its ZeRO-0 bf16 wrapper (FP16_UnfusedOptimizer) sums gradients in bf16 and checks each
    one for overflow with a host sync (measured on an H200: 0.56x the plain loop)."""
    if precision == "bf16" and zero_stage(conf) == 0 \
            and conf.get("data_types", {}).get("grad_accum_dtype") == "fp32":
        conf["zero_optimization"] = {**conf["zero_optimization"], "stage": 1}
    return conf


def merge(base: dict, over: dict) -> dict:
    """`over` laid over `base`: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _whole_weights(engine):
    """ZeRO-3 splits every weight over the ranks: gather them (a collective: every rank enters)
    to evaluate or save the model whole; a no-op under stages 0-2."""
    import contextlib

    import deepspeed

    if not engine.zero_optimization_partition_weights():
        return contextlib.nullcontext()
    return deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None)


def epoch_order(n: int, seed: int, epoch: int, length: int) -> np.ndarray:
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return np.resize(order, length)  # wraps around to whole global batches


def dropout_seed(seed: int, global_step: int, position: int) -> int:
    """The dropout seed of the micro-batch at `position` in the global batch of step `global_step`:
    the same whichever rank computes it."""
    return int(np.random.SeedSequence([seed, global_step, position]).generate_state(1)[0])


def epoch_lr_factor(cfg, epoch: int) -> float:
    """Cosine annealing per epoch (the reference's CosineAnnealingLR(T_max=epochs, eta_min))."""
    lr = cfg.lr_min + (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * epoch / cfg.epochs)) / 2
    return lr / cfg.lr


CURVE = ("step", "epoch", "loss", "lr", "seconds", "tokens_per_s")  # one entry per optimizer step


class _Curve:
    """Per-step loss, learning rate and throughput, without a host sync per step: losses add up in
    a device buffer, and on a GPU each step is timed by CUDA events, read when the curve is
    flushed (at checkpoints, which sync anyway; every rank flushes there, and the losses are
    averaged over the ranks then: each step's loss is its global batch's)."""

    def __init__(self, device, tokens_per_step: int, accumulation: int):
        import torch

        self.torch, self.cuda = torch, device.type == "cuda"
        self.device, self.tokens, self.accum = device, tokens_per_step, accumulation
        self.pending: list[tuple] = []  # (step in epoch, global step, lr, start mark, end mark)

    def epoch(self, epoch: int, steps: int) -> None:
        self.current, self.losses = epoch, self.torch.zeros(steps, device=self.device)

    def _mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = self.torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def begin(self, step: int, global_step: int, lr: float) -> None:
        self.pending.append((step, global_step, lr, self._mark()))

    def add_loss(self, step: int, loss) -> None:
        self.losses[step] += loss.detach().float() / self.accum  # in place: nothing kept per step

    def end(self) -> None:
        self.pending[-1] += (self._mark(),)

    def flush(self, into: dict) -> None:
        if not self.pending:
            return
        if self.cuda:
            self.torch.cuda.synchronize()
        lo, hi = self.pending[0][0], self.pending[-1][0] + 1  # the steps not flushed yet
        self.losses[lo:hi] = distributed.mean_over_ranks(self.losses[lo:hi].clone())
        losses = self.losses.tolist()
        for step, global_step, lr, t0, t1 in self.pending:
            seconds = t0.elapsed_time(t1) / 1000 if self.cuda else t1 - t0
            for key, value in zip(CURVE, (global_step, self.current + 1, losses[step], lr, seconds,
                                          self.tokens / seconds if seconds > 0 else math.nan)):
                into[key].append(value)
        self.pending = []


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _attached(module) -> list:
    """The attributes (each __dict__) of the engine's module (the model, or the loss head around it), of
    each of its modules and parameters, and each module's hook dicts, each with its keys as they are before
    DeepSpeed attaches its own. ZeRO-3 sets autograd Function classes on every module (pre_bwd_fn,
    post_bwd_fn) whose closures hold its parameter offloader, and with it its process group."""
    modules = list(module.modules())
    return [(held, set(held)) for held in [vars(p) for p in module.parameters()] + [vars(m) for m in modules] +
            [hooks for m in modules for k, hooks in vars(m).items() if k.endswith("hooks")]]


def _release(engine, before: list) -> None:
    """DeepSpeed's teardown, then what it attached to the model (`before`: _attached before it did):
    process groups, the optimizer and functions bound to a parameter on the parameters, the engine's
    hooks and ZeRO-3's backward Functions on the modules. A model that outlives its engine kept them,
    and through them the groups, in cycles through parameters that the collector cannot free: gloo's
    threads ran on into the interpreter's exit, where a rank that had finished and saved could abort
    ("terminate called without an active exception"), failing its job (on Slurm the chain's next
    generation never starts)."""
    module = engine.module
    engine.destroy()
    _forget_zero3(module)
    for held, names in before:
        for name in set(held) - names:
            del held[name]


def _forget_zero3(module) -> None:
    """What ZeRO-3 keeps of `module` (the engine's) at module level, which its destroy() leaves: the module,
    pushed on FWD_MODULE_STACK at setup and never popped, and the submodules its parameter coordinator's
    lru_cache is keyed by. They held the model, its weights and gradients after the unit dropped it (one
    more model for each engine of the process). DeepSpeed has no call to drop either: the stack loses this
    module's entries, the cache (recomputed where another engine needs it) is cleared."""
    import sys

    offload = sys.modules.get("deepspeed.runtime.zero.parameter_offload")
    coordinator = sys.modules.get("deepspeed.runtime.zero.partitioned_param_coordinator")
    if offload is None or coordinator is None:  # no ZeRO-3 engine was ever built here
        return
    ours = {id(m) for m in module.modules()}
    offload.FWD_MODULE_STACK[:] = [m for m in offload.FWD_MODULE_STACK if id(m) not in ours]
    for function in vars(coordinator.PartitionedParameterCoordinator).values():
        for cache in _lru_caches(function):
            cache.cache_clear()


def _lru_caches(function) -> list:
    """The functools.lru_cache wrappers in `function` itself or its closure (DeepSpeed's instrument_w_nvtx
    wraps one without functools.wraps, so no __wrapped__ leads to it)."""
    found = [function]
    for cell in getattr(function, "__closure__", None) or ():
        with contextlib.suppress(ValueError):  # an empty cell
            found.append(cell.cell_contents)
    return [f for f in found if hasattr(f, "cache_clear")]


def _master_dtype(engine) -> str:
    """The dtype of the weights the optimizer updates: the torch optimizer's parameters (ours, or
    DeepSpeed's ZeRO 1/2 and bf16 partitions); ZeRO-3 hands them to it only during a step."""
    for optimizer in (getattr(engine.lr_scheduler, "optimizer", None), engine.optimizer):
        for group in getattr(optimizer, "param_groups", None) or []:
            if group["params"]:
                return _name(group["params"][0].dtype)
    flat = getattr(engine.optimizer, "fp32_partitioned_groups_flat", None)  # ZeRO-3's master partitions
    return _name(flat[0].dtype) if flat else "unknown"


SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


def _complete_tags(ckpt_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for d in ckpt_dir.glob("step*"):
        if (d / COMPLETE).is_file() and d.name[4:].isdigit():
            found.append((int(d.name[4:]), d))
    return sorted(found)


def _unreadable_marker(step_dir: Path) -> str | None:
    """Why a step folder's complete.json cannot be read as one (a mapping) or no longer vouches for the step
    (_unvouched), or None; NotRead where the file system refuses the read (_marker)."""
    try:
        marker = json.loads(_marker(step_dir))
    except (OSError, ValueError) as e:
        return f"its {COMPLETE}: {first_line(e)}"
    return _unvouched(step_dir, marker) if isinstance(marker, dict) else f"its {COMPLETE}: not a mapping"


def _marked(step_dir: Path, state: dict) -> str:
    """complete.json's text for a step folder whose files are all written: the training state, each file's
    size and sha256, and its own checksum (manifest's, SELF), so that a byte of it or of a file changed since
    is found by resume (_unvouched), not trusted."""
    from collapse_hpc.store.manifest import SELF, file_entry, own_digest

    files = {f.name: file_entry(f) for f in sorted(step_dir.iterdir()) if f.is_file() and f.name != COMPLETE}
    marker = json.loads(json.dumps({**state, "files": files}, default=float))  # as resume reads it back
    return json.dumps({**marker, SELF: own_digest(marker)}) + "\n"


def _unvouched(step_dir: Path, marker: dict) -> str | None:
    """Why a step's complete.json no longer vouches for its files: changed since written (its own checksum), or
    a file it lists missing, of another size, or written since with other bytes (manifest.file_problem: hashed
    only then); None where it does, or it is an older version's (it lists none). A hash of a file the file system
    refuses is the checkpoint's NotRead: kept, never set aside."""
    from collapse_hpc.experiments.lm.checkpoint import NotRead
    from collapse_hpc.store.manifest import SELF, file_problem, own_digest

    if SELF in marker and marker[SELF] != own_digest(marker):
        return f"its {COMPLETE}: changed since it was written (its own checksum does not match)"
    listed, path = marker.get("files"), step_dir / COMPLETE
    if SELF not in marker or not isinstance(listed, dict):
        return None
    written = path.stat().st_mtime_ns
    return next((why for name, entry in sorted(listed.items())
                 if (why := file_problem(path, step_dir / name, name, entry, False, written, COMPLETE, NotRead))
                 is not None), None)


def _marker(step_dir: Path) -> str:
    """A step folder's complete.json, as text; NotRead where the file system refuses the read
    (reads.refused_read: its bytes may be whole, the checkpoint is kept)."""
    from collapse_hpc.experiments.lm.checkpoint import NotRead
    from collapse_hpc.store.reads import read_text

    return read_text(step_dir / COMPLETE, refused=NotRead)


def _cut_short(ckpt_dir: Path) -> list[Path]:
    """Remove the step folders of saves cut short (a full disk, a quota, a kill: no complete.json),
    which resume never reads and which hold a step's size (OPT-125M with its optimizer state: ~1.5 GB),
    and the temporaries of a best-model swap killed midway (atomic.sweep); complete steps stay (an
    earlier one is what a refused newest one falls back to). Returns the step folders removed."""
    complete = {d for _, d in _complete_tags(ckpt_dir)}
    cut = sorted(d for d in ckpt_dir.glob("step*") if d.name[4:].isdigit() and d.is_dir() and not d.is_symlink()
                 and d not in complete)
    for d in cut:
        shutil.rmtree(d, ignore_errors=True)
    atomic.sweep(ckpt_dir, "best")
    return cut


def _drop_cut_short(step_dir: Path) -> None:
    """Best effort, at the failure: a step folder whose save failed (a full disk: ~1.5 GB for OPT-125M
    with its optimizer state) goes now, not only at the next resumed job's _cut_short; one that holds
    its complete.json stays (resume trusts it), and what cannot be removed is left to _cut_short. Rank 0's
    alone: a rank whose save failed removed the folder as the others still wrote theirs in it, and one of
    them, failing on "No such file or directory", was named for the job's end in place of the full disk."""
    if step_dir.is_dir() and not step_dir.is_symlink() and not (step_dir / COMPLETE).is_file():
        shutil.rmtree(step_dir, ignore_errors=True)


def _save_pretrained_atomic(model, tokenizer, folder: Path) -> None:
    with atomic.atomic_dir(folder) as tmp:
        model.save_pretrained(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))


def train_generation(model, tokenizer, train_blocks, val_blocks, cfg, out_dir: Path, ckpt_dir: Path, *,
                     seed: int, rank: int, world_size: int, local_rank: int,
                     log: logging.Logger | None = None, last_dir: Path | None = None) -> dict:
    t = _Training(model, tokenizer, train_blocks, val_blocks, cfg, Path(out_dir), Path(ckpt_dir), seed=seed,
                  rank=rank, world_size=world_size, local_rank=local_rank,
                  log=log or logging.getLogger("collapse_hpc.lm"))
    t.last_dir = Path(last_dir) if last_dir is not None else None
    t.resume()
    if cfg.compile:
        t.compile()
    for epoch in range(t.state["global_step"] // t.steps_per_epoch, cfg.epochs):
        t.epoch(epoch)
        t.validate(epoch)
        t.checkpoint()
    return t.finish()


class _Training:
    """One generation's training in the steps train_generation takes: set up (process group, data,
    batch plan, DeepSpeed engine), resume from the last complete checkpoint, train an epoch,
    validate (keeping the best model), checkpoint, and save the best model."""

    def __init__(self, model, tokenizer, train_blocks, val_blocks, cfg, out_dir: Path, ckpt_dir: Path, *,
                 seed: int, rank: int, world_size: int, local_rank: int, log: logging.Logger):
        got = distributed.init(cfg.collective_timeout_s)
        if got[:2] != (rank, world_size):
            raise UserError(f"rank {rank}/{world_size} given, but the process group says {got[0]}/{got[1]}")
        import torch

        from collapse_hpc.experiments.lm.data import block_array
        from collapse_hpc.experiments.lm.model import check_ids, check_vocab

        self.tokenizer, self.cfg, self.out_dir, self.ckpt_dir, self.log = tokenizer, cfg, out_dir, ckpt_dir, log
        self.seed, self.rank, self.world_size = seed, rank, world_size
        check_vocab(model, tokenizer)
        ids, self.val_ids = block_array(train_blocks), block_array(val_blocks)
        if not len(ids) or not len(self.val_ids):
            raise UserError(f"no {'training' if not len(ids) else 'validation'} blocks: the split is shorter "
                            f"than one block of {ids.shape[1] if len(ids) else cfg.block_size} tokens")
        check_ids(model, ids)
        self.ids = ids
        self.device = distributed.device(local_rank)
        self.precision = resolve_precision(cfg, self.device)
        self.micro, self.accum = batch_plan(cfg.batch_size, cfg.micro_batch_size, world_size)
        self.global_batch = self.micro * self.accum * world_size
        if self.micro != min(cfg.micro_batch_size, cfg.batch_size):
            log.info("micro-batch of %d blocks, not micro_batch_size %d (%d blocks per rank): another number "
                     "of ranks may deal other micro-batches and dropout masks", self.micro, cfg.micro_batch_size,
                     cfg.batch_size // world_size)
        self.steps_per_epoch = math.ceil(len(ids) / self.global_batch)
        torch.manual_seed(seed)
        self.startup: dict[str, float] = {}  # seconds of the one-time phases (DeepSpeed init, first step)
        self.engine = self._engine(model)
        # the sums over the run ride in the checkpoints too (resume continues them; older ones lack them: from 0)
        self.state = {"global_step": 0, "best_val_loss": math.inf, "best_epoch": -1, "val_loss": [],
                      "train_loss": [], "curve": {k: [] for k in CURVE}, "train_seconds": 0.0, "tokens": 0,
                      "epoch_seconds": []}
        self.resumed_from = None
        self.last_dir: Path | None = None  # where finish() saves the last epoch's weights, if anywhere
        # the whole training set lives on the device: no host-to-device copy per step
        self.ids_dev = torch.from_numpy(ids).to(self.device)
        self.curve = _Curve(self.device, self.global_batch * ids.shape[1], self.accum)

    def _engine(self, model):
        import torch

        cfg, steps_per_epoch = self.cfg, self.steps_per_epoch
        # torch's own fused AdamW on CUDA: one kernel, nothing to compile (same update as the default)
        optimizer = None if cfg.fused_adam else torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=self.device.type == "cuda")
        conf = ds_config(cfg, self.micro, self.accum, self.world_size, self.precision)
        self.zero_stage = zero_stage(conf)
        started = time.perf_counter()
        deepspeed = distributed.load_deepspeed()  # not before: a job resumed after training never imports it
        from collapse_hpc.experiments.lm.checkpoint import use_weights_only  # DeepSpeed's checkpoint engine
        from collapse_hpc.experiments.lm.model import skip_layerdrop_draws

        self.startup["deepspeed_import"] = time.perf_counter() - started
        skip_layerdrop_draws(model)
        self.model, module = model, self._loss_module(model, deepspeed)

        def scheduler(basic_optimizer):
            # DeepSpeed calls this with the torch optimizer itself (ours, or the one it built for
            # fused_adam): under ZeRO 1/2 or bf16, engine.optimizer is a wrapper LambdaLR refuses
            return torch.optim.lr_scheduler.LambdaLR(
                basic_optimizer, lambda step: epoch_lr_factor(cfg, step // steps_per_epoch))

        if "activation_checkpointing" in conf:
            # HF models do not call DeepSpeed's checkpointing API: turn on their own
            model.gradient_checkpointing_enable()
        self.attached = _attached(module)  # what DeepSpeed attaches, _release drops
        started = time.perf_counter()
        engine, _, _, _ = deepspeed.initialize(
            model=module, optimizer=optimizer, lr_scheduler=scheduler,
            model_parameters=model.parameters() if optimizer is None else None, config=conf)
        use_weights_only(engine)  # resume never unpickles arbitrary objects
        self.startup["deepspeed_init"] = time.perf_counter() - started
        self.dtypes = {"master_dtype": _master_dtype(engine),
                       "compute_dtype": _name(next(engine.module.parameters()).dtype),
                       "autocast_dtype": "bfloat16" if self.precision == "bf16-mixed" else None}
        return engine

    def _loss_module(self, model, deepspeed):
        """What the engine wraps: the model itself (HF's loss), or loss.LossHead around it (the
        chunked loss). ZeRO-3 gathers a weight only for its own module's forward and backward; the
        head reads the output embedding outside lm_head's forward, so it is registered as the
        head's external parameter: gathered for the head's whole forward and backward."""
        from collapse_hpc.experiments.lm.loss import LossHead, supports

        cfg = self.cfg
        self.chunked = bool(cfg.loss_chunk_tokens) and supports(model)
        if cfg.loss_chunk_tokens and not self.chunked:
            self.log.info("loss: HF's over the whole batch's logits (the chunked loss needs an OPT or GPT-2 model)")
        if not self.chunked:
            return model
        head = LossHead(model, cfg.loss_chunk_tokens)
        if self.zero_stage == 3:
            deepspeed.zero.register_external_parameter(head, model.get_output_embeddings().weight)
        return head

    def compile(self) -> None:
        """torch.compile the engine's module with the config's backend and mode; static shapes (every
        micro-batch is micro x block_size), so it compiles once, at the first step."""
        cfg = self.cfg
        self.engine.compile(backend=cfg.compile_backend, compile_kwargs={"mode": cfg.compile_mode, "dynamic": False})

    def resume(self) -> None:
        """Continue from the last complete checkpoint, if any; first rank 0 removes what saves cut
        short left (_cut_short), while every other rank waits: no rank of this job is writing, and
        the unit's redo (or this CLI call) is the folder's only writer."""
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            for left in _cut_short(self.ckpt_dir):
                self.log.info("removed %s: a checkpoint whose save was cut short (no %s)", left, COMPLETE)
        distributed.barrier()
        tags = _complete_tags(self.ckpt_dir)
        for i in reversed(range(len(tags))):
            step, tag_dir = tags[i]
            then = f"resuming from {tags[i - 1][1].name}" if i else "this generation trains from its start"
            if not self._readable(tag_dir, then):
                continue
            self._check_layout(tag_dir)
            _, client = self.engine.load_checkpoint(str(self.ckpt_dir), tag=tag_dir.name)
            self.state.update({k: client[k] for k in self.state if k in client})  # older checkpoints: no curve
            self.resumed_from = step
            self.log.info("resumed from checkpoint %s (epoch %d)", tag_dir.name, step // self.steps_per_epoch)
            return

    def _readable(self, tag_dir: Path, then: str) -> bool:
        """Whether every rank may load step folder `tag_dir`: rank 0 reads it whole first (its marker and
        files, checkpoint.unreadable), and one it cannot read is set aside with one warning line ending in
        `then` (what training does instead), never half loaded; every rank learns rank 0's answer (a
        tampered file, or one the file system would not read now, kept, stops every rank, none left
        waiting for rank 0)."""
        import torch

        from collapse_hpc.experiments.lm.checkpoint import set_aside, unreadable

        why, refused = None, None
        if self.rank == 0:
            try:
                why = _unreadable_marker(tag_dir) or unreadable(tag_dir, self.engine.checkpoint_engine)
            except UserError as e:
                refused = e
        said = torch.tensor([float(why is not None), float(refused is not None)], device=self.device)
        unread, stopped = distributed.mean_over_ranks(said).tolist()
        if stopped:
            raise refused or UserError(f"training checkpoint {tag_dir}: refused on rank 0 (its log says why)")
        if not unread:
            return True
        if self.rank == 0:
            kept = set_aside(tag_dir)
            self.log.warning("warning: training checkpoint %s is unreadable (%s): set aside as %s (kept with the "
                             "checkpoints until this generation's model is published); %s", tag_dir, why, kept.name,
                             then)
        distributed.barrier()
        return False

    def _layout(self) -> dict:
        """How the optimizer state is laid out in a checkpoint: by ZeRO stage, rank count, bf16."""
        return {"zero_stage": self.zero_stage, "world_size": self.world_size, "bf16": self.precision == "bf16"}

    def _check_layout(self, tag_dir: Path) -> None:
        """A checkpoint laid out otherwise than this job's engine (e.g. bf16 written at ZeRO-0 by an
        older version, now run as ZeRO-1) is refused by name, not by a missing DeepSpeed file."""
        written = json.loads(_marker(tag_dir)).get("layout")  # read again: NotRead in a race too
        if written is None:  # from before layouts were kept: only a ZeRO-0 one shows, by its lack of optimizer shards
            if self.zero_stage == 0 or any(tag_dir.glob("*optim_states.pt")):
                return
            written = {"zero_stage": 0}
        mine = self._layout()
        if self.zero_stage == 0:  # an unpartitioned optimizer state fits any rank count
            written, mine = {**written, "world_size": None}, {**mine, "world_size": None}
        if written == mine:
            return

        def said(d):
            ranks = f" on {count(d['world_size'], 'rank')}" if d.get("world_size") else ""
            return f"ZeRO stage {d['zero_stage']}{ranks}{', bf16 weights' if d.get('bf16') else ''}"

        raise UserError(f"training checkpoint {tag_dir}: written by {said(written)}, this job trains by "
                        f"{said(self._layout())}: its optimizer state does not fit; delete {self.ckpt_dir} to "
                        f"train this generation afresh")

    def checkpoint(self) -> None:
        state, ckpt_dir = self.state, self.ckpt_dir
        self.curve.flush(state["curve"])  # the checkpoint carries the curve so far: resume continues it
        tag = f"step{state['global_step']:08d}"
        try:
            self.engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=dict(state), save_latest=False)
            distributed.barrier()  # every rank has returned from save_checkpoint
            if self.rank == 0:
                # atomic: a crash while writing must not leave a marker resume would trust half-written
                marker = _marked(ckpt_dir / tag, {**state, "layout": self._layout()})
                atomic.write_text(ckpt_dir / tag / COMPLETE, marker)
        except Exception:
            if self.rank == 0:  # the step folders' only remover, as it prunes: another rank may still write here
                _drop_cut_short(ckpt_dir / tag)
            raise
        if self.rank == 0:
            for _, old in _complete_tags(ckpt_dir)[:-1]:
                shutil.rmtree(old, ignore_errors=True)
        distributed.barrier()

    def epoch(self, epoch: int) -> None:
        """One epoch's optimizer steps (from where a resumed checkpoint left off)."""
        import torch
        from tqdm import tqdm

        cfg, state, steps_per_epoch = self.cfg, self.state, self.steps_per_epoch
        order = epoch_order(len(self.ids), self.seed, epoch, steps_per_epoch * self.global_batch)
        self.engine.train()
        loss_sum, micro_steps = torch.zeros((), device=self.device), 0
        self.curve.epoch(epoch, steps_per_epoch)
        start_step = state["global_step"] - epoch * steps_per_epoch
        t0 = time.perf_counter()
        bar = tqdm(range(start_step, steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   leave=False, disable=self.rank != 0)
        order_dev = torch.from_numpy(order).to(self.device)
        for step in bar:
            loss = self.optimizer_step(step, order_dev, loss_sum)
            micro_steps += self.accum
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            if cfg.checkpoint_every_steps and state["global_step"] % cfg.checkpoint_every_steps == 0 \
                    and step + 1 < steps_per_epoch:
                state["train_seconds"] += time.perf_counter() - t0
                self.checkpoint()
                t0 = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # steps are queued asynchronously: time them once they ran
        state["train_seconds"] += time.perf_counter() - t0
        state["epoch_seconds"].append(state["train_seconds"] - sum(state["epoch_seconds"]))
        loss_sum = distributed.mean_over_ranks(loss_sum)  # the global batches', not this rank's share
        state["train_loss"].append(float(loss_sum) / micro_steps if micro_steps else float("nan"))

    def optimizer_step(self, step: int, order_dev, loss_sum):
        """One optimizer step of the epoch: `accum` micro-batches of this rank's share of the global
        batch, their losses added to `loss_sum` (in place, on the device) -> the last one's loss."""
        import torch

        engine, state, micro = self.engine, self.state, self.micro
        started = time.perf_counter()
        self.curve.begin(step, state["global_step"] + 1, engine.get_lr()[0])
        base = step * self.global_batch
        for m in range(self.accum):
            pos = base + (m * self.world_size + self.rank) * micro
            batch = self.ids_dev[order_dev[pos:pos + micro]]
            torch.manual_seed(dropout_seed(self.seed, state["global_step"], pos - base))
            loss = engine(batch) if self.chunked else engine(input_ids=batch, labels=batch, use_cache=False).loss
            engine.backward(loss)
            engine.step()
            # a running sum on the device: no host sync per step, and no per-step tensor kept
            # (a list of each step's detached loss grew memory by ~32 MB a step, torch 2.13)
            loss_sum += loss.detach().float()
            self.curve.add_loss(step, loss)
        self.curve.end()
        if "first_step" not in self.startup:  # under compile: mostly the compilation
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.startup["first_step"] = time.perf_counter() - started
        state["tokens"] += self.global_batch * self.ids.shape[1]
        state["global_step"] += 1
        return loss

    def validate(self, epoch: int) -> None:
        """Validation loss after the epoch; the best epoch's model is kept (not the last)."""
        from collapse_hpc.experiments.lm.evaluate import mean_loss

        cfg, engine, state = self.cfg, self.engine, self.state
        with _whole_weights(engine):
            val = mean_loss(self.model, self.val_ids, cfg.eval_batch_size, self.device, self.rank,
                            self.world_size, bf16=cfg.eval_precision == "bf16")
        state["val_loss"].append(val)
        self.log.info("epoch %d/%d: train loss %.4f, validation loss %.4f", epoch + 1, cfg.epochs,
                      state["train_loss"][-1], val)
        if not math.isfinite(val) and state["best_epoch"] < 0:  # no model to keep: finish would find none
            raise UserError(f"lm: training diverged: the validation loss is {val} after epoch {epoch + 1} of "
                            f"{cfg.epochs}, and no epoch before had a finite one (lm.lr {cfg.lr:g}); lower lm.lr")
        if val < state["best_val_loss"]:
            state["best_val_loss"], state["best_epoch"] = val, epoch
            with _whole_weights(engine):
                if self.rank == 0:
                    _save_pretrained_atomic(self.model, None, self.ckpt_dir / "best")

    def finish(self) -> dict:
        """The weights after the last epoch to last_dir (if given), then the best model to out_dir
        (each with the tokenizer); the summary."""
        import torch

        if self.last_dir is not None:
            with _whole_weights(self.engine):
                if self.rank == 0:
                    _save_pretrained_atomic(self.model, self.tokenizer, self.last_dir)
        distributed.barrier()
        if self.rank == 0:
            from collapse_hpc.experiments.lm.model import load_model

            _save_pretrained_atomic(load_model(self.ckpt_dir / "best"), self.tokenizer, self.out_dir)
        distributed.barrier()
        _release(self.engine, self.attached)
        self.engine = self.model = None  # frees them before empty_cache
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        from collapse_hpc.experiments.lm.model import saved_dtypes

        state = self.state
        train_time, tokens = state["train_seconds"], state["tokens"]
        saved = "/".join(SAFETENSORS_DTYPES.get(d, d) for d in saved_dtypes(self.out_dir))
        return {**self.dtypes, "saved_dtype": saved,
                "best_val_loss": state["best_val_loss"], "best_epoch": state["best_epoch"],
                "val_loss": state["val_loss"], "train_loss": state["train_loss"], "epochs": self.cfg.epochs,
                "curve": state["curve"],
                "steps": state["global_step"], "tokens": tokens, "seconds": train_time,
                "epoch_seconds": state["epoch_seconds"],
                "tokens_per_s": tokens / train_time if train_time else float("nan"),
                "resumed_from": self.resumed_from, "world_size": self.world_size, "micro_batch_size": self.micro,
                "gradient_accumulation": self.accum, "precision": self.precision, "zero_stage": self.zero_stage,
                "loss": f"chunked ({self.cfg.loss_chunk_tokens} tokens)" if self.chunked else "hf",
                "startup": self.startup}
