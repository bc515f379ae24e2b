"""Every key of the run and of every built-in section, given each kind of wrong value (in the file and
through --set): the config is either taken or refused with one ConfigError line, and a taken one's
plan is checked the same way (engine.check); never another exception."""
import dataclasses

import pytest

from collapse_hpc import config as cfgmod
from collapse_hpc import engine, experiments
from collapse_hpc.errors import UserError

BASE = {"executor": "debug", "generations": 2, "seeds": [0], "regimes": ["replace"],
        "gmm": {"generations": 2, "replicates": 2, "chunk_replicates": 2, "samples": 50,
                "snapshot_generations": [0, -1]},
        "gaussian": {"generations": 2, "samples": [10], "replicates": 2, "chunk_replicates": 2},
        "lm": {"max_train_blocks": 8, "max_eval_blocks": 8, "epochs": 1, "batch_size": 8, "micro_batch_size": 8},
        "vae": {"epochs": 1, "classifier_epochs": 1}}

# YAML text of wrong values: types, sizes, non-finite numbers, repeats, control characters, regimes
VALUES = ["abc", "''", "'  '",
          "[1, 2]", "[]", "[1, 1]", "{a: 1}", "null", "true", "99999999999999999999999", "1.0e+300",
          "-1", "0", ".nan", "-.inf", "1e400", '"a\\x01b"', "'ünï🙂'", "2024-01-01", "[[1]]", "[{a: 1}]",
          "[{name: replace, overrides: 3}]", "[{name: replace, overrides: {gmm: {samples: 3}}}]",
          "[{name: replace, gmm: 3}]", "[{name: replace, gmm: {bogus: 1}}]", "[replace:1.5]", "[{}]"]


def _keys():
    out = [("", f.name) for f in dataclasses.fields(cfgmod.RunConfig) if f.name != "sections"]
    for name, cls in experiments.sections(experiments.BUILTIN).items():
        out += [(f"{name}.", f.name) for f in dataclasses.fields(cls)]
    return [p + k for p, k in out]


def _attempt(raw: dict, overrides=()):
    try:
        run = cfgmod.from_dict(raw, "c.yaml", overrides, sections=experiments.sections(experiments.BUILTIN))
        experiments.check_regimes(run, "c.yaml")
        engine.check(run, "c.yaml", force=True)
    except UserError as e:
        assert "\n" not in str(e), str(e)


@pytest.mark.parametrize("key", _keys())
def test_every_wrong_value_is_taken_or_one_line(key):
    for text in VALUES:
        raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
        *section, name = key.split(".")
        node = raw[section[0]] if section else raw
        node[name] = cfgmod.yamlfile.loads(text, "v")
        _attempt(raw)
        _attempt(BASE, [f"{key}={text}"])


@pytest.mark.parametrize("where", ["", "gmm.", "gaussian.", "lm.", "vae."])
def test_a_regime_has_no_overrides_key(where):
    """Overrides are written under the experiment's name ({name: replace, lm: {epochs: 10}}); `overrides`
    is only where they are kept."""
    with pytest.raises(cfgmod.ConfigError, match=r"regimes\[0\]\.overrides: unknown key"):
        cfgmod.from_dict({**BASE, "regimes": ["replace"]}, "c.yaml",
                         [f"{where}regimes=[{{name: replace, overrides: {{gmm: {{samples: 3}}}}}}]"],
                         sections=experiments.sections(experiments.BUILTIN))


@pytest.mark.parametrize("section", ["gmm", "gaussian"])
def test_a_pool_budget_beyond_any_machine_plans_as_no_bound(section):
    """pool_memory_gib 1e300: the chunks are the configured ones (inf GiB fits every chunk)."""
    run = cfgmod.from_dict(BASE, "c.yaml", [f"{section}.pool_memory_gib=1.0e+300", f"{section}.regimes=[accumulate]"],
                           sections=experiments.sections(experiments.BUILTIN))
    engine.check(run, "c.yaml", force=True)
    chains = [c for c in engine.plan(run) if c.experiment == section]
    assert chains and all(len(c.jobs) == 1 for c in chains)  # 2 replicates in chunks of 2


@pytest.mark.parametrize("key", ["name", "data_dir", "lm.model", "lm.dataset", "vae.dataset"])
def test_an_empty_string_is_refused_naming_the_key(key):
    """lm.model: '' was taken and failed only inside a unit, after the run folder was made; name: '' and
    data_dir: '' were taken as they are. Unset is null, the key's default."""
    section, _, name = key.rpartition(".")
    raw = dict(BASE)
    if section:
        raw[section] = {**raw[section], name: " "}
    else:
        raw[name] = ""
    with pytest.raises(UserError, match=rf"c.yaml: {key}: must not be empty, got '\s*' \(leave the key out"):
        cfgmod.from_dict(raw, "c.yaml", sections=experiments.sections(experiments.BUILTIN))


def test_a_profiles_environment_may_set_a_variable_empty(tmp_path):
    from collapse_hpc.launch import profile

    path = tmp_path / "p.yaml"
    path.write_text("name: p\npartition: debug\nenv:\n  CUDA_VISIBLE_DEVICES: ''\n")
    assert profile.load(path).env == {"CUDA_VISIBLE_DEVICES": ""}
