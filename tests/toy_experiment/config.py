"""A tiny chain experiment for testing the engine and the launch layer (not shipped)."""
from dataclasses import dataclass

from collapse_hpc.config import Section, knob


@dataclass
class ToyConfig(Section):
    rows: int = knob(10, "rows per generation", min=1)
    fail_at: int = knob(-1, "generation that raises (for failure tests); -1 never")
    sleep_s: float = knob(0.0, "seconds each generation sleeps, in steps that survive preemption", min=0)
