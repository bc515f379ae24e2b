"""The experiment registry: the built-ins, then experiments registered through the entry-point
group `collapse_hpc.experiments` (a typed Registration each); a built-in name cannot be taken,
and an entry point that does not load ends the command with one error line (exit 2)."""
import os

import pytest

from collapse_hpc import experiments
from collapse_hpc.errors import UserError
from collapse_hpc.experiments.base import Experiment, Registration
from collapse_hpc.experiments.parts import ArrayExperiment
from tests.tail_experiment import Tail
from tests.tail_experiment.config import TailConfig
from tests.test_cli import cli, one_error_line
from tests.toy_experiment import Toy
from tests.toy_experiment.config import ToyConfig


def _plugin(tmp_path, lines: list[str]) -> dict:
    """An installed distribution holding only these entry points; the env that puts it on the path."""
    info = tmp_path / "plugin" / "collapse_hpc_plugin-1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: collapse-hpc-plugin\nVersion: 1\n")
    (info / "entry_points.txt").write_text("[collapse_hpc.experiments]\n" + "\n".join(lines) + "\n")
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path / "plugin"), os.environ["PYTHONPATH"]])}


def test_builtins_first_then_the_entry_points_each_a_typed_registration():
    registry = experiments.registry()
    assert list(registry)[:4] == list(experiments.BUILTIN)
    assert {"toy", "tail", "ltchain", "ltarray"} <= set(registry)  # tests/entry_points
    assert all(isinstance(r, Registration) and r.name == n for n, r in registry.items())
    assert experiments.get("toy").name == "toy" and experiments.config_class("toy").__name__ == "ToyConfig"
    assert experiments.cli("lm").__name__ == "collapse_hpc.experiments.lm.cli" and experiments.cli("gmm") is None


def test_a_third_party_entry_point_registers_an_experiment_for_the_command(tmp_path):
    env = _plugin(tmp_path, ["toy2 = tests.experiments.test_registry:TOY2"])
    p = cli("config", env=env)
    assert p.returncode == 0, p.stderr
    assert "section toy2:" in p.stdout


def test_a_builtin_name_cannot_be_replaced(tmp_path):
    line = one_error_line(cli("config", env=_plugin(tmp_path, ["lm = tests.toy_experiment:REGISTRATION"])))
    assert "entry point lm = tests.toy_experiment:REGISTRATION" in line and "built-in" in line


@pytest.mark.parametrize("value,says", [("no_such_module:REGISTRATION", "does not load: ModuleNotFoundError"),
                                        ("tests.toy_experiment:NOPE", "does not load: AttributeError"),
                                        ("tests.toy_experiment:EXPERIMENT", "names a Toy, not"),
                                        ("tests.toy_experiment:REGISTRATION", "registers the experiment 'toy'")])
def test_an_entry_point_that_does_not_give_a_registration_is_one_error_line(tmp_path, value, says):
    line = one_error_line(cli("config", env=_plugin(tmp_path, [f"broken = {value}"])))
    assert f"entry point broken = {value}" in line and says in line


def test_the_old_environment_variable_registers_nothing():
    p = cli("config", env={"COLLAPSE_EXTRA_EXPERIMENTS": "lm=tests.toy_experiment,extra=tests.toy_experiment"})
    assert p.returncode == 0, p.stderr
    assert "section extra:" not in p.stdout and "lm.vocab_size" in p.stdout


class _Toy2(Toy):
    name = "toy2"


TOY2 = Registration(ToyConfig, _Toy2())  # what a third party's package would hold


def _without(base, *methods):
    """A subclass of `base` that falls back to Experiment's own `methods` (those it must implement)."""
    own = {m: getattr(ArrayExperiment if m == "run_part" else Experiment, m) for m in methods}
    return type("Partial", (base,), {"name": "partial", **own})


@pytest.mark.parametrize("missing", ["generations", "memory", "metrics_schema", "run_unit"])
def test_registration_refuses_an_experiment_without_a_required_method(missing):
    with pytest.raises(TypeError) as e:
        Registration(ToyConfig, _without(Toy, missing)())
    assert str(e.value) == (f"experiment partial (Partial) lacks {missing}() "
                            f"(the contract of experiments.base.Experiment)")


def test_registration_names_everything_missing_at_once():
    with pytest.raises(TypeError, match=r"lacks generations\(\), memory\(\) \("):
        Registration(ToyConfig, _without(Toy, "generations", "memory")())


def test_an_array_experiment_needs_run_part_and_its_replicate_keys():
    with pytest.raises(TypeError, match=r"lacks run_part\(\) "):
        Registration(TailConfig, _without(Tail, "run_part")())
    Registration(TailConfig, Tail())  # the tail itself is complete
    with pytest.raises(TypeError, match="lacks config key replicates: int, config key chunk_replicates: int"):
        Registration(ToyConfig, Tail())
    with pytest.raises(TypeError, match="lacks config key pool_memory_gib: float"):
        Registration(TailConfig, type("Pooled", (Tail,), {"pool_bytes": lambda self, run, variant: 8.0})())


def test_an_incomplete_experiment_of_an_entry_point_is_one_error_line(tmp_path):
    point = "nomemory = tests.experiments.incomplete:REGISTRATION"
    line = one_error_line(cli("config", env=_plugin(tmp_path, [point])))
    assert "does not load: TypeError: experiment nomemory (NoMemory) lacks memory()" in line


@pytest.mark.parametrize("experiment, name, says", [
    ("lm", "mycorpus", "data prepare mycorpus --from PATH --data-dir "),
    ("vae", "myimages", "data prepare myimages --from PATH --data-dir "),
    ("lm", "wikitext2", "data prepare wikitext2 --data-dir "),
    ("vae", "mnist", "data prepare mnist --data-dir "),
])
def test_an_unprepared_data_set_is_said_with_the_command_that_prepares_it(tmp_path, experiment, name, says):
    # a name of the user's own was told `data prepare NAME`, which then answered "unknown data set"
    run = experiments.config_from_dict({"data_dir": str(tmp_path / "data"), experiment: {"dataset": name}})
    with pytest.raises(UserError, match=f"{experiment}.dataset: .* is not prepared; run: collapse-hpc {says}"):
        experiments.get(experiment).check(run)

