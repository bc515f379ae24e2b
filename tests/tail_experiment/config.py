"""Config section `tail`: categorical recursion on a Zipf distribution (test-only experiment)."""
from __future__ import annotations

from dataclasses import dataclass

from collapse_hpc.config import Section, knob


@dataclass
class TailConfig(Section):
    categories: int = knob(1000, "categories of the real distribution, p_k proportional to k^-exponent", min=2)
    exponent: float = knob(1.2, "Zipf exponent of the real distribution", gt=0)
    samples: int = knob(500, "points each generation fits its frequencies to (and then draws)", min=1)
    head: int = knob(10, "the head is categories 1..head; tail_mass is what a fit gives the rest", min=1)
    replicates: int = knob(8, "independent replicates per variant", min=1)
    chunk_replicates: int = knob(4, "replicates per array task (each runs every generation)", min=1)

    def validate(self):
        if self.head >= self.categories:
            raise ValueError(f"head: must be below categories ({self.categories}), got {self.head}")
