"""Synthetic run folders in the layout experiments write (config.yaml, units, manifests),
with known metric values, so the report is tested without running any experiment."""
from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from collapse_hpc import engine, experiments
from collapse_hpc.experiments.gaussian.theory import tail_mass, w2
from collapse_hpc.regimes import Regime
from collapse_hpc.store import RunStore, write_manifest, write_parquet
from collapse_hpc.store.atomic import write_bytes

# the regimes these runs use, by the label their variants' names start with
REGIMES = {r.label: r for r in (Regime(), Regime("replace", 0.1), Regime("accumulate"),
                                 Regime("accumulate-subsample"))}


def _unit(root: Path, experiment: str, variant: str, unit: str, tables: dict, *, finished: bool = True,
          seconds: float = 36.0, gpus: int = 0, cpus: int = 4, pngs: dict | None = None,
          regime: str = "replace-p0", seed: int = 0, settings: dict | None = None, facts: dict | None = None) -> Path:
    d = root / experiment / variant / unit
    d.mkdir(parents=True, exist_ok=True)
    for name, cols in tables.items():
        write_parquet(d / name, pa.table(cols))
    for name, data in (pngs or {}).items():
        write_bytes(d / name, data)
    if finished:
        now = time.time()
        write_manifest(d, config_hash="synthetic", started=now - seconds,
                       extra={**(facts or {}), "experiment": experiment, "variant": variant, "unit": unit,
                              "regime": REGIMES[regime].record(), "seed": seed, "settings": settings or {},
                              "resources": {"gpus": gpus, "cpus": cpus}})
        # the manifest's own clock: make `seconds` exact for the compute test
        from tests.helpers import edit_manifest

        edit_manifest(d, lambda m: m.update(seconds=seconds))
    return d


def write_config(root: Path, sections: dict, generations: int = 3, seeds=(0,), regimes=None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    cfg = {"name": root.name, "generations": generations, "seeds": list(seeds),
           "regimes": regimes or [{"name": "replace", "keep_fraction": 0.0}], "executor": "local",
           "profile": None, "data_dir": "data", **sections}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    engine.freeze(RunStore(root), experiments.config_from_dict(cfg, str(root / "config.yaml")))  # plan.json


def record_config(root: Path) -> None:
    """run.json as the version that wrote the run's config.yaml recorded it: its hash."""
    from collapse_hpc import yamlfile
    from collapse_hpc.config import config_hash
    from collapse_hpc.store.atomic import write_json

    write_json(root / "run.json", {"config_hash": config_hash(yamlfile.load(root / "config.yaml")), "updated": 0})


# standard normals drawn at once (32 MiB): a block of replicates' whole chains, so that a paper-shaped run (1000
# generations of n = 1000) is drawn in blocks, not held whole
DRAWS = 1 << 22


def _fits(rng, accumulate: bool, n: int, generations: int, replicates: int) -> tuple[np.ndarray, ...]:
    """(mu, sigma, drawn variance) of each replicate's fit at each generation, each (replicates, generations): the
    variance (ddof 0) of the n points drawn from that fit. The draws come in the order a loop over replicates takes
    them (its real data, then n a generation), so replace's fits are that loop's to the bit; accumulate's fit to the
    pool of every sample so far merges each generation's mean and variance into the pool's (Chan et al.), equal to
    the pool's own to about 1e-13 without keeping the pool."""
    mu, sigma, drawn = (np.empty((replicates, generations)) for _ in range(3))
    block = max(1, DRAWS // ((generations + 1) * n))
    for first in range(0, replicates, block):
        z = rng.standard_normal((min(block, replicates - first), generations + 1, n))
        rows, data = slice(first, first + len(z)), z[:, 0]
        for g in range(generations):
            m, s = data.mean(axis=1), data.std(axis=1)
            if accumulate and g:
                pooled, delta = g * n, m - mu[rows, g - 1]
                m = mu[rows, g - 1] + delta * n / (pooled + n)
                s = np.sqrt((sigma[rows, g - 1] ** 2 * pooled + s ** 2 * n + delta ** 2 * pooled * n / (pooled + n))
                            / (pooled + n))
            mu[rows, g], sigma[rows, g] = m, s
            data = m[:, None] + s[:, None] * z[:, g + 1]  # rng.normal(m, s, n): loc + scale * a standard normal
            drawn[rows, g] = data.var(axis=1)
    return mu, sigma, drawn


def gaussian(root: Path, generations: int = 30, replicates: int = 200, ns=(10, 100)) -> None:
    """Real single-Gaussian recursion (MLE) of N(0, 1), replace and accumulate, one array part per variant: the
    columns and types gaussian.run writes (its SCHEMA; the report derives var_hat, log_var_hat, w2_squared)."""
    rng = np.random.default_rng(0)
    for regime in ("replace-p0", "accumulate"):
        for n in ns:
            mu, sigma, drawn = (a.ravel() for a in _fits(rng, regime == "accumulate", n, generations, replicates))
            values = {"mu_hat": mu, "sigma_hat": sigma, "mu_error": np.abs(0 - mu), "sigma_error": np.abs(1 - sigma),
                      "w2": w2(0, 1, mu, sigma), "sample_variance": drawn,
                      **{f"tail_mass_{k}sigma": tail_mass(0, 1, mu, sigma, k) for k in (2, 3)}}
            cols = {"generation": pa.array(np.tile(np.arange(generations), replicates), pa.int32()),
                    "replicate": pa.array(np.repeat(np.arange(replicates), generations), pa.int32()),
                    "samples": pa.array(np.full(mu.size, n), pa.int32()),
                    **{k: pa.array(v, pa.float64()) for k, v in values.items()}}
            _unit(root, "gaussian", f"{regime}-samples{n}-s0", "part_000", {"metrics.parquet": cols}, seconds=7.2,
                  regime=regime, settings={"samples": n})


def gmm(root: Path, generations: int = 40, parts: int = 2, replicates: int = 3, components: int = 0,
        snapshot_points: int = 300, regimes: tuple[str, ...] = ("replace-p0", "accumulate")) -> None:
    """Columns as gmm.metrics names them: l2_squared, total_variance, the tail shares, two components' covariance traces
    and c0's 95% tail, all shrinking with the blob; components: that many components' other columns too (noise);
    snapshot_points: the points of each snapshot (every 10th generation and the last); regimes: the first
    collapses fast, the others slowly."""
    from collapse_hpc.experiments.gmm.metrics import names

    rng = np.random.default_rng(1)
    shaped = ("c0_cov_trace", "c1_cov_trace", "c0_q95_x")
    per_component = [c for c in names(components) if c not in names(0) and c not in shaped]
    for regime, rate in zip(regimes, (0.12, *[0.01] * (len(regimes) - 1))):
        for p in range(parts):
            metrics = {k: [] for k in ("generation", "replicate", "l2_squared", "total_variance", *shaped,
                                       "tail_share_2sigma", "tail_share_3sigma", *per_component)}
            snaps = {k: [] for k in ("replicate", "generation", "x", "y")}
            for r in range(p * replicates, (p + 1) * replicates):
                scale = 1.0
                for g in range(generations):
                    scale *= np.exp(-rate * rng.uniform(0.5, 1.5))
                    metrics["generation"].append(g)
                    metrics["replicate"].append(r)
                    metrics["l2_squared"].append(1e-3 * np.exp(0.2 * g) * rng.uniform(0.5, 2) if g else 0.0)
                    metrics["total_variance"].append(1.9 * scale ** 2)  # the two components' traces
                    metrics["c0_cov_trace"].append(scale ** 2)
                    metrics["c1_cov_trace"].append(0.9 * scale ** 2)
                    metrics["c0_q95_x"].append(1.645 * scale)
                    metrics["tail_share_2sigma"].append(np.exp(-2 / scale**2))  # a blob of sd `scale`
                    metrics["tail_share_3sigma"].append(np.exp(-4.5 / scale**2))
                    for c in per_component:
                        metrics[c].append(rng.uniform(0.5, 1.5))
                    if g % 10 == 0 or g == generations - 1:
                        pts = rng.normal(0, scale, (snapshot_points, 2))
                        snaps["replicate"] += [r] * snapshot_points
                        snaps["generation"] += [g] * snapshot_points
                        snaps["x"] += list(pts[:, 0])
                        snaps["y"] += list(pts[:, 1])
            m = {k: pa.array(v, pa.int32() if k in ("generation", "replicate") else pa.float64())  # gmm's types
                 for k, v in metrics.items()}
            s = {k: pa.array(v, pa.int64() if k in ("generation", "replicate") else pa.float64())
                 for k, v in snaps.items()}
            _unit(root, "gmm", f"{regime}-s0", f"part_{p:03d}", {"metrics.parquet": m, "snapshots.parquet": s},
                  seconds=72.0, cpus=2, regime=regime)


ZERO_SHOT, ZERO_SHOT_PPL = "zero_shot_test_ppl", 115.0
# the initial model as the chain's generation 0 records it (model.initial_model)
INITIAL_MODEL = {"kind": "tiny-base", "model": "tiny", "train_blocks": [512, 4608], "block_grouping": "corpus",
                 "disjoint_from_training_blocks": True}
TAIL_PPL = {"rare": (300.0, 0.3), "middle": (40.0, 0.1), "frequent": (8.0, 0.03)}  # generation 0, rise per drift
REAL_RARE_SHARE, REAL_MIDDLE_SHARE = 0.09, 0.4
TIMINGS = {"train_seconds": [1500.0], "sample_seconds": [250.0], "sample_tokens_per_s": [20480.0]}  # per generation


def lm(root: Path, generations: int = 4, seeds=(0, 1), done: dict | None = None, small: bool = False,
       continuation: str = "text of gen {g} for {i} in {variant} <i>", steps: int = 40) -> None:
    """done: variant -> generations finished (default all); one more is left unfinished. continuation:
    the generated text of each example (str.format with g, i, variant). steps: optimizer steps a generation."""
    n = steps
    rng = np.random.default_rng(2)
    for keep in (0.0, 0.1):
        for seed in seeds:
            variant = f"replace-p{keep:g}-s{seed}"
            reached = (done or {}).get(variant, generations)
            for g in range(min(reached + 1, generations)):
                drift = (1 - keep * 8) * g
                metrics = {"generation": pa.array([g], pa.int64()),
                           "test_ppl": [30.0 + 6 * drift + rng.normal(0, 0.5)],
                           **{f"distinct_{n}": [0.3 + 0.15 * n - 0.03 * drift] for n in range(1, 3 if small else 5)},
                           "unigram_entropy": [8.0 - 0.3 * drift], "ppl_p50": [20.0 - drift],
                           "rare_token_share": [0.05 / (1 + drift)], "middle_token_share": [0.3 - 0.02 * drift],
                           **{f"test_ppl_{c}": [v * (1 + r * drift)] for c, (v, r) in TAIL_PPL.items()},
                           **TIMINGS}
                if not small:
                    metrics.update({"type_token_ratio": [0.2 - 0.02 * drift]})
                if g == 0:  # the initial model before fine-tuning, as the chain's generation 0 reports it
                    metrics[ZERO_SHOT] = [ZERO_SHOT_PPL]
                    metrics["real_rare_token_share"] = [REAL_RARE_SHARE]
                    metrics["real_middle_token_share"] = [REAL_MIDDLE_SHARE]
                ppl = np.exp(rng.normal(np.log(25) - 0.25 * drift, 0.4 + 0.1 * drift, 600))
                seqs = {"block_id": pa.array(np.arange(600), pa.int64()), "ppl": ppl}
                examples = {"prompt_block_id": pa.array([0, 199, 399, 599], pa.int64()),
                            "prompt_source": ["real"] * 4, "prompt": [f"<b>Prompt</b> {i} & co" for i in range(4)],
                            "continuation": [continuation.format(g=g, i=i, variant=variant) for i in range(4)]}
                step = np.arange(1, n + 1)
                curve = {"generation": pa.array([g] * n, pa.int64()), "step": pa.array(step, pa.int64()),
                         "epoch": pa.array((step - 1) // 8 + 1, pa.int64()),
                         "loss": 2.0 + 0.1 * drift + np.exp(-step / 10) + rng.normal(0, 0.05, n),
                         "lr": np.full(n, 2e-5), "seconds": np.full(n, 0.5),
                         "tokens_per_s": 16384 + rng.normal(0, 500, n)}
                _unit(root, "lm", variant, f"gen_{g:03d}", {"metrics.parquet": metrics, "sequence_ppl.parquet": seqs,
                                                            "examples.parquet": examples,
                                                            "training_curve.parquet": curve},
                      finished=g < reached, seconds=1800.0, gpus=2, cpus=16, regime=f"replace-p{keep:g}", seed=seed,
                      facts={"initial_model": INITIAL_MODEL} if g == 0 else None)


def _grid_png(blur: float, seed: int, side: int = 8, scale: int = 4) -> bytes:
    """samples.png as the VAE writes it (vae.grid.write_grid): 100 side x side 'digits' (rings), blurrier
    with `blur`."""
    from collapse_hpc.experiments.vae import grid

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] * (28 / side)
    tiles = []
    for _ in range(100):
        cx, cy, rad = rng.uniform(11, 17), rng.uniform(11, 17), rng.uniform(5, 9)
        d = np.abs(np.hypot(xx - cx, yy - cy) - rad)
        tiles.append(np.clip(1 - d / (1.5 + blur), 0, 1))
    buf = io.BytesIO()
    grid.write_grid(np.stack(tiles), buf, scale)
    return buf.getvalue()


def vae(root: Path, generations: int = 4, finished: int = 3, seed: int = 0, far: int | None = None,
        spread: float = 1.0, classes: int | None = None) -> None:
    """far: a generation where a quarter of one latent dimension's means lie far out (1e3); spread: generation
    0's sd of the latent means; classes: the real images' class count stored (real_classes; None: a run from
    before the column)."""
    for regime in ("replace-p0", "accumulate"):
        for g in range(finished):
            blur = g * (2.0 if regime == "replace-p0" else 0.3)
            metrics = {"generation": pa.array([g], pa.int64()), "class_entropy": [2.3 - 0.4 * blur / 2],
                       "class_min_share": [0.09 / (1 + blur)], "latent_tail_share": [0.008 / (1 + blur) ** 2],
                       "classifier_accuracy": [0.94],
                       "real_share": [1.0 if g == 0 else 0.0 if regime == "replace-p0" else 1 / (g + 1)],
                       **({"real_classes": [float(classes)]} if classes else {})}
            mu = np.random.default_rng(g).normal(0, spread / (1 + blur), (400, 3))  # narrower with collapse
            if g == far:
                mu[:100, 0] = 1e3
            latents = {"generation": pa.array([g] * 400, pa.int64()), "sample": pa.array(range(400), pa.int64()),
                       **{f"mu_{d}": mu[:, d] for d in range(3)}}
            _unit(root, "vae", f"{regime}-s{seed}", f"gen_{g:03d}", {"metrics.parquet": metrics,
                                                                      "latents.parquet": latents},
                  pngs={"samples.png": _grid_png(blur, g)}, seconds=120.0, gpus=1, cpus=8, regime=regime, seed=seed)


def full_run(root: Path, small: bool = False) -> Path:
    """A run with all four experiments; lm's replace-p0.1-s1 stopped after generation 1 and
    vae after generation 2 (of 4): an in-progress run."""
    regimes = [{"name": "replace", "keep_fraction": 0.0}, {"name": "replace", "keep_fraction": 0.1}]
    write_config(root, {"lm": {"generations": 4, "seeds": [0, 1]},
                        "gmm": {"generations": 12 if small else 40, "regimes": [regimes[0], {"name": "accumulate"}]},
                        "gaussian": {"generations": 12 if small else 30,
                                     "regimes": [regimes[0], {"name": "accumulate"}]},
                        "vae": {"generations": 4, "regimes": [regimes[0], {"name": "accumulate"}]}},
                 generations=4, regimes=regimes)
    lm(root, done={"replace-p0.1-s1": 2}, small=small)
    gmm(root, generations=12 if small else 40)
    gaussian(root, generations=12 if small else 30, replicates=40 if small else 200)
    vae(root)
    return root
