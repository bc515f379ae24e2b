"""collapse-hpc: model-collapse experiments as resumable HPC batch jobs."""

__version__ = "0.1.0"
