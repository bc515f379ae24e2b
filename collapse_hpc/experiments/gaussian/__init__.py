"""Single-Gaussian recursion (the paper's notebook, section 3).

Estimate mu and sigma from n points, draw n new points from N(mu_hat, sigma_hat^2), repeat.
One variant per sample size n (setting `samples`); array-shaped like gmm: each task is a
chunk of replicates through every generation, writing metrics.parquet with columns
generation, replicate, samples, mu_hat, sigma_hat, mu_error (|mu - mu_hat|), sigma_error
(|sigma - sigma_hat|), w2 (Wasserstein-2 distance between N(mu, sigma^2) and the fit), sample_variance
(of the points drawn, ddof 0), tail_mass_2sigma and tail_mass_3sigma (the mass the fit puts beyond the
original's mu -/+ 2 sigma and 3 sigma, closed form; real: 0.0455, 0.0027). The report derives var_hat,
log_var_hat (2 log sigma_hat) and w2_squared from them where it reads a part (derive), as they were stored.
Theory under replace (theory.py): MLE E[sigma_hat^2 at generation g] = sigma^2 ((n-1)/n)^(g+1);
for both estimators E[log sigma_hat^2] falls linearly (variance -> 0 almost surely) and, for the
unbiased one, E[W2^2] grows without bound.
"""
from __future__ import annotations

from collapse_hpc.experiments.base import Registration, default_variants
from collapse_hpc.experiments import parts
from collapse_hpc.experiments.parts import ArrayExperiment
from collapse_hpc.experiments.gaussian.config import GaussianConfig
from collapse_hpc.regimes import items_held

NAME = "gaussian"


# (replicates, n) arrays a generation holds beside the pool at its peak: the training copy, its centred
# square, the draw, the gathered indices and their layout copy (tracemalloc: 2 under replace, 3 under
# accumulate, 4.5 under accumulate-subsample); one, the draw alone, let a part past the machine pass the check
WORKING_ARRAYS = 5


class GaussianExperiment(ArrayExperiment):
    name = NAME
    title = "Single Gaussian"
    order = 30
    metrics = ("mu_hat, sigma_hat, var_hat: the fitted mean, standard deviation and variance; log_var_hat: "
               "log of var_hat (its mean is the log of the typical variance); mu_error, sigma_error: their "
               "distance to the real mu and sigma; w2, w2_squared: Wasserstein-2 distance of the fit to the "
               "real N(mu, sigma^2); sample_variance: of the points drawn; "
               "tail_mass_2sigma, tail_mass_3sigma: the mass the fit puts beyond the real μ ± 2σ and ± 3σ (closed "
               "form; the real distribution's own: 0.0455 and 0.0027); "
               "one variant per sample size n (setting samples).")

    def generations(self, run) -> int:
        return run.generations_of(NAME)

    def metrics_schema(self, section=None):
        from collapse_hpc.experiments.gaussian.run import SCHEMA

        return SCHEMA

    def variants(self, run):
        return default_variants(NAME, run, extra=lambda cfg: [{"samples": n} for n in cfg.samples])

    def training_points(self, run, variant) -> tuple[int, str]:
        return variant.settings["samples"], f"{NAME}.samples"

    def pool_bytes(self, run, variant) -> float:
        """The Pool of recursion.recurse at its end (it adds every generation's n float64 draws;
        accumulate folds them into running moments)."""
        return 8 * self._pool_points(run, variant, variant.regime)

    def _pool_points(self, run, variant, regime) -> int:
        n = variant.settings["samples"]
        return items_held(regime, n, n, self.generations(run), summarized=True)

    def part_memory(self, run, variant, size: int, regime=None) -> int:
        from collapse_hpc.experiments.gaussian.run import METRICS

        pool = self._pool_points(run, variant, regime or variant.regime)  # float64 points per replicate
        n = variant.settings["samples"]
        return parts.memory(size, self.generations(run), len(METRICS), WORKING_ARRAYS * n, pool)

    def run_part(self, ctx, size: int) -> None:
        from collapse_hpc.experiments.gaussian.run import run_part

        run_part(ctx, size)

    def figures(self):
        from collapse_hpc.experiments.gaussian.figures import FIGURES

        return FIGURES

    def derive(self, df):
        """var_hat, log_var_hat and w2_squared (run.DERIVED), which parts no longer store, from sigma_hat and w2;
        a part that stores them (made before) keeps its own."""
        from collapse_hpc.experiments.gaussian.run import derived

        extra = derived(df)
        df = df.assign(**extra) if extra else df
        # an older run's name of var_hat: shown as the metric it is (only declared metrics are)
        return df.rename(columns={"sigma2_hat": "var_hat"}) if "var_hat" not in df else df


EXPERIMENT = GaussianExperiment()
REGISTRATION = Registration(GaussianConfig, EXPERIMENT)
