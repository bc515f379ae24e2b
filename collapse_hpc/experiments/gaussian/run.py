"""One array task of the gaussian experiment: a chunk of replicates through every generation."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from collapse_hpc.experiments.gaussian.recursion import recurse
from collapse_hpc.experiments.gaussian.theory import SIGMAS, tail_mass, w2
from collapse_hpc.experiments import parts
from collapse_hpc.experiments.schema import INT32, MetricsSchema
from collapse_hpc.plotting.metrics import NONNEGATIVE, SHARE, Metric, specs

# what each column is, for the report: display name, unit, which way collapse moves it
SPECS = specs(
    Metric("mu_hat", "fitted mean"),
    Metric("sigma_hat", "fitted σ", worse="lower", bounds=NONNEGATIVE),
    Metric("var_hat", "fitted variance", worse="lower", bounds=NONNEGATIVE),
    Metric("log_var_hat", "log fitted variance", worse="lower"),
    Metric("mu_error", "|μ − fitted mean|", worse="higher", bounds=NONNEGATIVE),
    Metric("sigma_error", "|σ − fitted σ|", worse="higher", bounds=NONNEGATIVE),
    Metric("w2", "W2 to the real", worse="higher", bounds=NONNEGATIVE),
    Metric("w2_squared", "W2² to the real", worse="higher", bounds=NONNEGATIVE),
    Metric("sample_variance", "variance of the samples", worse="lower", bounds=NONNEGATIVE),
    *(Metric(f"tail_mass_{k}sigma", f"mass beyond the real μ ± {k}σ", worse="lower", bounds=SHARE) for k in SIGMAS),
)
METRICS = tuple(SPECS)
SCHEMA = MetricsSchema(per_replicate=True, metrics=SPECS, generation=INT32, settings=(("samples", INT32),))


def run_part(ctx, size: int) -> None:
    cfg, G = ctx.config, ctx.run.generations_of("gaussian")
    n = ctx.variant.settings["samples"]
    ids = parts.replicate_range(cfg.replicates, size, ctx.index)
    R = len(ids)
    rng = np.random.default_rng(ctx.seed(n))
    table = {name: np.empty((G, R)) for name in METRICS}

    def record(gen):
        table["mu_hat"][gen.index] = gen.mu_hat
        table["sigma_hat"][gen.index] = gen.sigma_hat
        table["var_hat"][gen.index] = gen.sigma_hat**2
        with np.errstate(divide="ignore"):  # sigma_hat 0 (underflow: a point mass) is log variance -inf
            table["log_var_hat"][gen.index] = 2 * np.log(gen.sigma_hat)  # its mean: the typical variance
        table["mu_error"][gen.index] = np.abs(cfg.mu - gen.mu_hat)
        table["sigma_error"][gen.index] = np.abs(cfg.sigma - gen.sigma_hat)
        table["w2"][gen.index] = w2(cfg.mu, cfg.sigma, gen.mu_hat, gen.sigma_hat)
        table["w2_squared"][gen.index] = table["w2"][gen.index] ** 2
        table["sample_variance"][gen.index] = gen.drawn.var(1)
        for k in SIGMAS:  # the fit's own mass beyond the original's k-sigma bounds, exact (no sampling)
            table[f"tail_mass_{k}sigma"][gen.index] = tail_mass(cfg.mu, cfg.sigma, gen.mu_hat, gen.sigma_hat, k)

    real = cfg.mu + cfg.sigma * rng.standard_normal((R, n))
    ddof = 0 if cfg.estimator == "mle" else 1
    with tqdm(total=G, desc=f"gaussian {ctx.variant.name} part {ctx.index}", unit="gen", disable=None,
              mininterval=5) as bar:
        recurse(real, G, ctx.variant.regime, ddof, rng, record, bar)

    ctx.write_metrics(parts.metrics_table(table, ids, samples=n), {
        "experiment": "gaussian", "variant": ctx.variant.name, "part": ctx.index, "generations": G,
        "replicates": [ids.start, ids.stop], "regime": ctx.variant.regime.record(), "samples": n,
        "estimator": cfg.estimator})
