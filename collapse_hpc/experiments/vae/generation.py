"""One generation of the VAE chain: train on the regime's mix, then measure and draw it.

Reads the decoders of earlier generations (their model.safetensors), writes into its folder:
model.safetensors (this generation's VAE), metrics.parquet (one wide row) and samples.png.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np
import pyarrow as pa
import torch

from collapse_hpc.errors import UserError
from collapse_hpc.experiments.vae import classifier, data, grid, metrics, model, train
from collapse_hpc.experiments.vae.train import REAL

MODEL = "model.safetensors"


def device_of(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("vae.device: cuda requested but no GPU is visible")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


@contextlib.contextmanager
def deterministic(threads: int):
    """Same seed, device and thread count -> same bytes; the process's settings are restored after
    (the debug back-end runs other experiments in this process)."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark, torch.get_num_threads())
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]
        torch.set_num_threads(before[3])


def run(ctx) -> None:
    if not ctx.is_main:  # a single-process experiment: extra ranks have nothing to do
        return
    with deterministic(ctx.threads):
        _run(ctx)


def _run(ctx) -> None:
    cfg = ctx.config
    device = device_of(cfg.device)
    splits = data.load(ctx.data_dir, cfg.dataset)
    height, width = splits["train"].shape
    real = torch.from_numpy(splits["train"].images).to(device)

    rng = np.random.default_rng(ctx.seed(1))
    n_generated = cfg.synthetic_size or len(real)
    slots = train.plan_slots(ctx.variant.regime, len(real), n_generated, ctx.index, rng)
    decoders = {}
    for g in sorted(set(slots[0].tolist()) - {REAL}):
        decoders[g] = model.load(ctx.previous[g] / MODEL, device)
    seeds = {"init": ctx.seed(2), "order": ctx.seed(3), "prior": ctx.seed(4), "noise": ctx.seed(5)}
    vae, train_loss = train.fit(cfg, height, width, real, slots, decoders, seeds, device, ctx.log)
    with ctx.atomic(MODEL) as tmp:
        model.save(vae, tmp)

    judge_dir = ctx.run_dir / "vae" / "classifier" / f"{cfg.dataset}-h{cfg.classifier_hidden}-e{cfg.classifier_epochs}"
    judge, record = classifier.cached(judge_dir, splits, cfg.classifier_hidden, cfg.classifier_epochs, device, ctx.log)
    ctx.uses(judge_dir / classifier.FILE)  # the yardstick of every generation: in the manifest, verified
    row = evaluate(vae, judge, splits["test"], cfg.eval_samples, ctx.seed(6), device)
    row.update(train_loss=train_loss, classifier_accuracy=record["accuracy"],
               real_share=float((slots[0] == REAL).mean()))
    with ctx.atomic("samples.png") as tmp:
        grid.write_grid(row.pop("_grid"), tmp, cfg.grid_scale)
    table = pa.table({"generation": pa.array([ctx.index], pa.int64()),
                      **{k: pa.array([float(v)], pa.float64()) for k, v in row.items()}})
    ctx.write_table("metrics.parquet", table, {
        "experiment": "vae", "dataset": cfg.dataset, "regime": ctx.variant.regime.label,
        "classifier": {k: record[k] for k in ("sha256", "accuracy", "epochs", "arch")},
        "grid": {"rows": grid.ROWS, "cols": grid.COLS, "scale": cfg.grid_scale, "pad": grid.PAD}})
    ctx.log.info("generation %d: elbo %.2f, class entropy %.3f, frechet %.3f", ctx.index, row["elbo"],
                 row["class_entropy"], row["frechet"])


def evaluate(vae, judge, test, n_samples: int, seed: int, device) -> dict:
    """Every metric of one generation (see metrics.py); '_grid' holds the first 100 samples."""
    g = torch.Generator(device=device).manual_seed(seed)
    test_x = torch.from_numpy(test.images).to(device)
    row = metrics.evaluate_elbo(vae, test_x, g)
    samples = vae.sample(n_samples, g, device)
    labels, feats = classifier.predict(judge, samples)
    _, real_feats = classifier.predict(judge, test_x)
    shares = metrics.class_shares(labels)
    row.update({f"class_{c}": float(s) for c, s in enumerate(shares)})
    row["class_entropy"] = metrics.entropy(shares)
    samples_np = samples.cpu().numpy()
    row["pixel_variance"] = metrics.pixel_variance(samples_np)
    row["frechet"] = metrics.frechet(feats, real_feats)
    row["_grid"] = samples_np[:grid.ROWS * grid.COLS]
    return row
