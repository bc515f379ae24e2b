"""The tail experiment's report figure: how many categories survive, generation after generation."""
from __future__ import annotations

from collapse_hpc.plotting.figures import GAPS, metric_grid
from collapse_hpc.plotting.plots import Context


def tail_support(ctx: Context):
    fig = metric_grid(ctx, ["support"], logy=True, replicates=True, ylabels={"support": "categories in the support"})
    return fig and (fig, "Categories the fitted distribution still gives any probability, against generation: "
                         f"under replace a category once missed is gone for good; accumulating keeps them. {GAPS}")


FIGURES = [("support", "Support of the fitted distribution", tail_support)]
