"""The in-process back-end (`--executor debug`, and `collapse-hpc EXPERIMENT` by hand)."""
import pytest

from tests.launch.helpers import collapse, write_config


@pytest.mark.parametrize("argv", [("run", "--executor", "debug"), ("ltchain",)])
def test_a_unit_run_in_process_leaves_the_process_group_it_joined(tmp_path, argv):
    """The lm's pipeline joins a process group (a lone rank: gloo on CPUs, nccl on a GPU) and leaves it to
    whoever ran the unit. A job's rank leaves it when its unit is done (launch/job.py); a unit run in this
    process kept it to the interpreter's exit, where gloo's threads may abort the process after every unit
    was saved ("terminate called without an active exception"), and NCCL warns it was never destroyed."""
    dist = pytest.importorskip("torch.distributed")
    cfg = write_config(tmp_path, generations=2, ltchain={"keeps_group": True})
    try:
        rc, _, err = collapse(argv[0], cfg, "--run", tmp_path / "run", *argv[1:])
        assert rc == 0, err
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
