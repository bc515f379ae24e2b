"""One array task of the gaussian experiment: a chunk of replicates through every generation."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from collapse_hpc.experiments.gaussian.recursion import recurse
from collapse_hpc.experiments.gaussian.theory import SIGMAS, tail_mass, w2
from collapse_hpc.experiments import parts
from collapse_hpc.experiments.schema import INT32, MetricsSchema
from collapse_hpc.plotting.metrics import NONNEGATIVE, SHARE, Metric, specs

# the values are in the real data's own units (the config's mu and sigma; sigma 1 by default): not divided by sigma
DATA, SQUARED = "data units", "data units²"

# what each column is, for the report: display name, unit, which way collapse moves it
SPECS = specs(
    Metric("mu_hat", "fitted mean", DATA),
    Metric("sigma_hat", "fitted σ", DATA, worse="lower", bounds=NONNEGATIVE),
    Metric("mu_error", "|μ − fitted mean|", DATA, worse="higher", bounds=NONNEGATIVE),
    Metric("sigma_error", "|σ − fitted σ|", DATA, worse="higher", bounds=NONNEGATIVE),
    Metric("w2", "W2 to the real", DATA, worse="higher", bounds=NONNEGATIVE),
    Metric("sample_variance", "variance of the samples", SQUARED, worse="lower", bounds=NONNEGATIVE),
    *(Metric(f"tail_mass_{k}sigma", f"mass beyond the real μ ± {k}σ", worse="lower", bounds=SHARE) for k in SIGMAS),
)
# computed where the report reads a part (derived), not stored: 3 of 11 float64 columns, 1.4 of the 5.3 GB
# paper.yaml's parts took
DERIVED = specs(
    Metric("var_hat", "fitted variance", SQUARED, worse="lower", bounds=NONNEGATIVE),
    Metric("log_var_hat", "log fitted variance", f"ln of {SQUARED}", worse="lower"),
    Metric("w2_squared", "W2² to the real", SQUARED, worse="higher", bounds=NONNEGATIVE),
)
METRICS = tuple(SPECS)
SCHEMA = MetricsSchema(per_replicate=True, metrics=SPECS, generation=INT32, settings=(("samples", INT32),),
                       derived=DERIVED)


def derived(have) -> dict[str, np.ndarray]:
    """The DERIVED metrics that `have` (name -> float64 values: a part's table) lacks, of the stored ones it
    holds, by the float64 operations that computed them when parts stored them: the same bits. An older
    run's sigma2_hat stands for var_hat. log_var_hat is 2 log σ̂, not log σ̂²: a σ̂ under 1.5e-154 squares
    to a subnormal or 0 (log -inf) where its log is finite; σ̂ 0 (underflow: a point mass) gives -inf."""
    out = {}
    if "sigma_hat" in have:
        sigma_hat = np.asarray(have["sigma_hat"], np.float64)
        if "var_hat" not in have and "sigma2_hat" not in have:
            out["var_hat"] = sigma_hat**2
        if "log_var_hat" not in have:
            with np.errstate(divide="ignore"):
                out["log_var_hat"] = 2 * np.log(sigma_hat)  # its mean: the log of the typical variance
    if "w2" in have and "w2_squared" not in have:
        out["w2_squared"] = np.asarray(have["w2"], np.float64) ** 2
    return out

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
        table["mu_error"][gen.index] = np.abs(cfg.mu - gen.mu_hat)
        table["sigma_error"][gen.index] = np.abs(cfg.sigma - gen.sigma_hat)
        table["w2"][gen.index] = w2(cfg.mu, cfg.sigma, gen.mu_hat, gen.sigma_hat)
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
