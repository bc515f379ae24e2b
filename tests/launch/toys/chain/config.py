from dataclasses import dataclass

from collapse_hpc.config import Section, knob


@dataclass
class ChainToyConfig(Section):
    rows: int = knob(8, "values per generation", min=1)
    ranks: int = knob(1, "processes per unit (a gloo all-reduce checks the rendezvous when > 1)", min=1)
    fail_at: int = knob(-1, "generation that raises; -1 never")
    fail_seed: int = knob(-1, "only the chain of this seed fails; -1 every chain")
    fail_rank: int = knob(-1, "only this rank raises (the others wait for it in the rendezvous); -1 every rank")
    fail_as: str = knob("bug", "what the failure is: bug (a RuntimeError) or input (bad input: a UserError)")
    warns_at: int = knob(-1, "generation whose unit logs a warning line, as the lm's does for a training checkpoint "
                             "it sets aside; -1 none")
    sleep_s: float = knob(0.0, "seconds per generation, in 0.5 s steps that survive a requeue", min=0)
    linger_s: float = knob(0.0, "seconds the job's process lives on after its unit is finished", min=0)
    deaf_s: float = knob(0.0, "seconds after its first step during which the unit ignores Ctrl-C, as numba's first "
                              "compile swallows it", min=0)
    keeps_group: bool = knob(False, "a lone rank joins a gloo process group and leaves it to whoever runs the "
                                    "unit, as the lm's pipeline does (distributed.init)")
    lost_rank: int = knob(-1, "rank that dies unseen, as one on another host would (its peer record removed), "
                              "while the others wait as in a collective that never notices; -1 none")
