from dataclasses import dataclass

from collapse_hpc.config import Section, knob


@dataclass
class ArrayToyConfig(Section):
    parts: int = knob(2, "array parts per variant", min=1)
    replicates: int = knob(3, "replicates per part", min=1)
    samples: int = knob(50, "samples per generation", min=2)
    fail_part: int = knob(-1, "part that raises; -1 never")
