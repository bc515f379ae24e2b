"""An experiment that lacks its memory estimate, for the registry's tests: importing this module
fails with Registration's one line, as a third party's incomplete experiment would."""
from collapse_hpc.experiments.base import Experiment, Registration
from tests.toy_experiment import Toy
from tests.toy_experiment.config import ToyConfig


class NoMemory(Toy):
    name = "nomemory"
    memory = Experiment.memory  # the base's: not implemented


REGISTRATION = Registration(ToyConfig, NoMemory())
