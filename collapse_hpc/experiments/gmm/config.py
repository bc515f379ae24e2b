"""Config section `gmm`: the Gaussian-mixture recursion (the paper's notebook, section 2)."""
from __future__ import annotations

from dataclasses import dataclass

from collapse_hpc.config import Section, knob

POINTS_PER_COMPONENT = 2


@dataclass
class GMMConfig(Section):
    generations: int | None = knob(2050, "generations (the notebook's 2050; --generations sets the run's "
                                   "chains, not this)", min=1)
    samples: int = knob(1000, "points drawn per generation (and real points)", min=1)
    components: int = knob(2, "mixture components fitted each generation", min=1)
    covariance: str = knob("full", "covariance type, as scikit-learn's GaussianMixture",
                           choices=("full", "tied", "diag", "spherical"))
    tol: float = knob(1e-5, "EM stops when the lower bound changes by less than this", gt=0)
    max_iter: int = knob(2000, "EM iterations at most", min=1)
    reg_covar: float = knob(1e-6, "added to the covariance diagonals (scikit-learn's default)", min=0)
    init_data: str = knob("blob", "real data: blob (2-D standard normal, the notebook) or two-mode",
                          choices=("blob", "two-mode"))
    # bounded: EM in float64 resolves a unit spread beside squared distances up to ~1e12 (1e9 apart failed)
    separation: float = knob(4.0, "two-mode: distance between the two unit-variance modes (on x)", min=0, max=1e6)
    replicates: int = knob(64, "independent replicates per variant", min=1)
    chunk_replicates: int = knob(16, "replicates per array task (each runs every generation)", min=1)
    snapshot_generations: list[int] = knob([0, 1, 10, 100, -1],
                                           "generations whose points go to snapshots.parquet "
                                           "(-1: the last; which points: snapshot_points)")
    snapshot_points: str = knob("drawn", "what snapshot generation g holds: drawn (the points drawn from generation "
                                "g's fit, as the notebook's and the paper's panel g, with the real data as "
                                "generation -1) or training (generation g's training data; 0: the real data)",
                                choices=("drawn", "training"))
    snapshot_replicates: int = knob(3, "replicates (the first ones) with snapshots", min=0)
    pool_memory_gib: float = knob(4.0, "accumulate regimes keep every generation's points: chunks are "
                                       "made smaller to fit in this much memory", gt=0)

    def validate(self):
        # scikit-learn fits K components to n >= K points, but a component given one point is a point mass of
        # variance reg_covar: generation 0 would start collapsed. Two points a component is the least with a
        # spread (as gaussian.samples' least, 2)
        if self.samples < POINTS_PER_COMPONENT * self.components:
            raise ValueError(f"samples ({self.samples}) must be at least {POINTS_PER_COMPONENT} per component, "
                             f"{POINTS_PER_COMPONENT * self.components} for components {self.components}: a component "
                             f"fitted to one point is a point mass of variance reg_covar, no spread to recurse on")
