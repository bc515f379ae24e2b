"""Seconds per generation of the Gaussian-mixture recursion under each regime, this code's pool
against the straightforward one (the baseline), in the same process.

The baseline pool keeps every generation's points apart and takes mix's choice pool by pool, then
concatenates the parts (what regimes.Pool did before it stacked the pooling regimes' points in one
array); under accumulate-subsample that is one fancy index per generation so far, per replicate and
generation, so a generation's cost grows with its index and a chain's with the square of its
generations. Both run collapse_hpc.experiments.gmm.recursion.recurse on the same replicates (one
array task of paper.yaml: R = 8 replicates of N = 1000 points, 2 full components) and must give the
same numbers bit for bit (every recorded metric, every generation: exit 1 otherwise).

Per regime it prints seconds per generation (all of it, and its phases: building the next
generation's training data from the pool, the EM fit, the metrics, the rest: sampling), the
regime's pool seconds per generation (median) over the first and the last tenth of the generations (how
they grow), and the ratio new / old. A chain at paper scale (2050 generations) is projected from a
line fitted to each generation's pool time (constant + slope x generation: the total grows with
the square of the generations where the slope is not 0). Then the same for the single Gaussian's
accumulate-subsample (one pool for all replicates, points along axis 1). The last line is
`ratio: <new / old seconds per generation, GMM accumulate-subsample>`.
Defaults: R=8, G=400, N=1000, 2 alternated runs of each (46 s on 2 cores; 2 min 14 s on busy
ones). A whole paper-scale task: -G 2050 --repeats 1 --gaussian-generations 20 (1 min 52 s).
--cpu-time: this process's CPU seconds (the fit runs on one thread) instead of wall time, for a shared
machine whose other work the wall clock counts. Each regime also prints its mean EM iterations a fit.

Where accumulate-subsample's time went (paper scale, --cpu-time, 2026-12-06): 7.11 ms a generation
against keep 10%'s 6.57, its pool 1.43 ms against 0.53 and its fit cheaper (37.6 EM iterations a fit
against 43.5). Of the pool, most was the gather of 1000 random points from each replicate's 2M
(32 MB, past the caches): a fancy index, items[idx], ~150 us a replicate; np.take copies the same rows
in the same layout at a third of it. Since then 5.22 ms against 5.16 (pool 0.62 against 0.32): the
rest is numpy's choice without replacement (~28 us a replicate), its sort and the sum of the pool sizes.
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.regimes.concatenated import Concatenated  # noqa: E402  the baseline: the straightforward pool


now = time.perf_counter  # the clock of every figure (--cpu-time: time.process_time)


class Clock:
    """Seconds spent per phase, and each generation's pool seconds."""

    def __init__(self):
        self.phases = dict.fromkeys(("pool", "fit", "metrics"), 0.0)
        self.pool_by_generation: list[float] = []
        self.iterations: list[float] = []  # each fit's EM iterations, the mean over its replicates

    def timed(self, cls):
        clock = self

        class Timed(cls):
            def add(self, items):
                t = now()
                super().add(items)
                clock.charge("pool", t)

            def training(self, *a, **k):
                t = now()
                out = super().training(*a, **k)
                clock.charge("pool", t)
                return out

        return Timed

    def charge(self, phase: str, since: float) -> None:
        dt = now() - since
        self.phases[phase] += dt
        if phase == "pool":
            self.pool_by_generation[-1] += dt


@contextmanager
def patched(module, **values):
    old = {k: getattr(module, k) for k in values}
    for k, v in values.items():
        setattr(module, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(module, k, v)


def run_gmm(pool_class, regime, R: int, G: int, N: int, seed: int):
    """(metrics: (G, names, R), Clock, seconds) of one chunk's recursion with `pool_class`."""
    from collapse_hpc.experiments.gmm import em, metrics, recursion

    clock = Clock()
    fit = em.fit

    def timed_fit(*a, **k):
        clock.pool_by_generation.append(0.0)
        t = now()
        out = fit(*a, **k)
        clock.charge("fit", t)
        clock.iterations.append(float(out.n_iter.double().mean()))
        return out

    rows = []

    def record(gen):
        t = now()
        rows.append(np.stack([v.numpy() for v in metrics.measure(gen, recursion.real_modes("blob")).values()]))
        clock.charge("metrics", t)

    rngs = [recursion.draws(seed, r) for r in range(R)]
    real = [recursion.real_data("blob", N, rng) for rng in rngs]
    with patched(recursion, Pool=clock.timed(pool_class)), patched(recursion.em, fit=timed_fit):
        t = now()
        recursion.recurse(real, G, regime, recursion.FitSettings(), N, rngs, record)
        seconds = now() - t
    return np.stack(rows), clock, seconds


def run_gaussian(pool_class, regime, R: int, G: int, n: int, seed: int):
    from collapse_hpc.experiments.gaussian import recursion

    rows = []
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((R, n))
    with patched(recursion, Pool=pool_class):
        t = now()
        recursion.recurse(real, G, regime, 0, rng, lambda gen: rows.append((gen.mu_hat, gen.sigma_hat)))
        seconds = now() - t
    return np.array(rows), seconds


def projected(pool: list[float], other: float, generations: int) -> float:
    """Seconds of a chain of `generations`: its pool's per-generation times fitted by a line
    (constant + slope x generation, summed; fitted to the median of each tenth of the generations,
    which a busy machine's stalls do not move), the rest at `other` seconds per generation."""
    tenths = np.array_split(np.arange(len(pool)), 10)
    slope, constant = np.polyfit([t.mean() for t in tenths], [np.median(np.array(pool)[t]) for t in tenths], 1)
    return (other + constant) * generations + slope * generations * (generations - 1) / 2


def gmm_regime(label: str, regime, R: int, G: int, N: int, seed: int, paper: int, repeats: int) -> float:
    """new / old seconds per generation here (the fastest of `repeats` runs of each, alternated)."""
    from collapse_hpc.regimes import Pool

    runs: dict[str, list] = {"old": [], "new": []}
    for _ in range(repeats):
        for name, cls in (("old", Concatenated), ("new", Pool)):
            runs[name].append(run_gmm(cls, regime, R, G, N, seed))
    first = runs["old"][0][0]
    same = all(np.array_equal(first, values, equal_nan=True) for rs in runs.values() for values, _, _ in rs)
    seconds, pool = {}, {}
    for name, rs in runs.items():
        _, clock, seconds[name] = min(rs, key=lambda r: r[2])
        ms = {k: v / G * 1e3 for k, v in clock.phases.items()}
        rest = seconds[name] / G * 1e3 - sum(ms.values())
        per, tenth = clock.pool_by_generation, max(1, G // 10)  # medians: a busy machine stalls now and then
        pool[name] = clock.phases["pool"]
        chain = projected(per, (seconds[name] - pool[name]) / G, paper)
        print(f"  {label:21s} {name}: {seconds[name] / G * 1e3:6.2f} ms/generation = pool {ms['pool']:5.2f} "
              f"(first tenth {np.median(per[:tenth]) * 1e3:5.2f}, last {np.median(per[-tenth:]) * 1e3:5.2f}) "
              f"+ fit {ms['fit']:5.2f} + metrics {ms['metrics']:4.2f} + sampling and rest {rest:4.2f}; "
              f"{paper} generations: {chain:5.0f} s projected; EM iterations a fit {np.mean(clock.iterations):4.1f}")
    print(f"  {label:21s} new/old {seconds['new'] / seconds['old']:.2f} (pool alone {pool['new'] / pool['old']:.2f}); "
          f"every metric of every generation {'bit-identical' if same else 'DIFFERS'}")
    if not same:
        raise SystemExit(1)
    return seconds["new"] / seconds["old"]


def gaussian(G: int, seed: int, repeats: int) -> bool:
    """The single Gaussian's accumulate-subsample, old and new; whether their estimates agree bit for bit."""
    from collapse_hpc.regimes import Pool, Regime

    print(f"gaussian: R=250 replicates x G={G} generations, accumulate-subsample")
    for n in (100, 1000):
        got: dict[str, list] = {"old": [], "new": []}
        for _ in range(repeats):
            for name, cls in (("old", Concatenated), ("new", Pool)):
                got[name].append(run_gaussian(cls, Regime("accumulate-subsample"), 250, G, n, seed))
        same = all(np.array_equal(got["old"][0][0], values) for rs in got.values() for values, _ in rs)
        old, new = (min(seconds for _, seconds in got[name]) for name in ("old", "new"))
        print(f"  n={n:5d}: old {old / G * 1e3:6.2f}, new {new / G * 1e3:6.2f} ms/generation, "
              f"new/old {new / old:.2f}; estimates {'bit-identical' if same else 'DIFFER'}")
        if not same:
            return False
    return True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicates", "-R", type=int, default=8, help="replicates of one array task (paper.yaml: 8)")
    p.add_argument("--generations", "-G", type=int, default=400)
    p.add_argument("--samples", "-N", type=int, default=1000)
    p.add_argument("--paper-generations", type=int, default=2050, help="the chain length projected to")
    p.add_argument("--gaussian-generations", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=2, help="runs of each, alternated; the fastest counts")
    p.add_argument("--cpu-time", action="store_true",
                   help="CPU seconds of this process (one thread) instead of wall time: on a shared machine")
    a = p.parse_args()
    global now
    now = time.process_time if a.cpu_time else time.perf_counter
    import torch

    from collapse_hpc.experiments.gmm import em
    from collapse_hpc.regimes import Pool, Regime

    torch.set_num_threads(1)  # as the array tasks
    em.threads(1)
    R, G, N = a.replicates, a.generations, a.samples
    t = time.perf_counter()
    run_gmm(Pool, Regime(), 2, 2, N, a.seed)
    print(f"warm-up: {time.perf_counter() - t:.1f} s (numba kernels: compile or cache load; not timed below)")
    print(f"gmm: R={R} replicates x G={G} generations, N={N}, 2 full components, one thread "
          "(pool: the next generation's training data; ms per generation of the whole chunk)")
    regimes = (("replace", Regime()), ("replace, keep 10%", Regime("replace", 0.1)),
               ("accumulate-subsample", Regime("accumulate-subsample")))
    ratios = {label: gmm_regime(label, regime, R, G, N, a.seed, a.paper_generations, a.repeats)
              for label, regime in regimes}

    if not gaussian(a.gaussian_generations, a.seed, a.repeats):
        return 1
    print(f"ratio: {ratios['accumulate-subsample']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
