"""Config section `gaussian`: the single-Gaussian recursion (the paper's notebook, section 3)."""
from __future__ import annotations

from dataclasses import dataclass

from collapse_hpc.config import Section, knob


RESOLVED = 1e-9  # the least sigma / |mu|: 2**-52 is float64's step; a variance needs thousands of steps


@dataclass
class GaussianConfig(Section):
    generations: int | None = knob(1000, "generations (the notebook's 1000; --generations sets the run's "
                                   "chains, not this)", min=1)
    samples: list[int] = knob([100, 500, 1000, 10000], "sample sizes n, one variant each", min=2, unique=True)
    estimator: str = knob("mle", "variance estimate: mle (ddof 0, the notebook) or unbiased (ddof 1, the paper's "
                                 "theory and configs/paper.yaml)",
                          choices=("mle", "unbiased"))
    # bounded so that squares and logs stay finite in float64 (W2, log variance): the results scale with sigma
    mu: float = knob(0.0, "mean of the real data", min=-1e100, max=1e100)
    sigma: float = knob(1.0, "standard deviation of the real data", gt=1e-100, max=1e100)
    replicates: int = knob(1000, "independent replicates per variant", min=1)
    chunk_replicates: int = knob(250, "replicates per array task (each runs every generation)", min=1)
    pool_memory_gib: float = knob(4.0, "accumulate-subsample keeps every generation's points: chunks "
                                       "are made smaller to fit in this much memory", gt=0)

    def validate(self):
        if not self.samples:
            raise ValueError("samples: give at least one sample size")
        if self.sigma < abs(self.mu) * RESOLVED:  # mu + sigma z rounds to mu: sigma_hat 0 from generation 0
            raise ValueError(f"sigma: {self.sigma:g} is below what float64 resolves around mu = {self.mu:g} (every "
                             f"draw would round to mu, a collapse at generation 0 of rounding, not of the "
                             f"recursion); give sigma of at least {abs(self.mu) * RESOLVED:.3g}, or a mu nearer 0 "
                             f"(the results scale with sigma and shift with mu)")
