"""Two tiny experiments for the launch tests (not shipped): `ltchain`, a chain whose
generations derive from the previous one (optionally several ranks with a gloo all-reduce,
a failure at one generation, resumable sleep steps), and `ltarray`, an array of parts.

They register through entry points, as the other test experiments do (tests/conftest.py), so
job subprocesses and Slurm jobs see them too."""
