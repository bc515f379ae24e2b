"""Typed configs: every kind of error is one line naming the file and the key."""
import errno
import os
from dataclasses import dataclass

import pytest

from collapse_hpc import config as cfgmod
from collapse_hpc import experiments
from collapse_hpc.errors import ConfigError
from collapse_hpc.regimes import Regime
from tests import helpers  # noqa: F401  (registers the toy experiment)


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def error_of(tmp_path, text, **kw):
    with pytest.raises(ConfigError) as e:
        experiments.load_config(write(tmp_path, text), **kw)
    msg = str(e.value)
    assert "\n" not in msg
    assert "c.yaml" in msg
    return msg


def test_loads_typed_sections(tmp_path):
    run = experiments.load_config(write(tmp_path, "generations: 4\nseeds: [1, 2]\n"
                                                  "regimes: [replace, 'replace:0.1', accumulate]\ntoy: {rows: 5}\n"))
    assert run.generations == 4 and run.seeds == [1, 2]
    assert run.regimes == [Regime("replace"), Regime("replace", 0.1), Regime("accumulate")]
    assert run.section("toy").rows == 5
    assert run.generations_of("toy") == 4


def test_unknown_key_suggests_closest(tmp_path):
    msg = error_of(tmp_path, "generatons: 3\ntoy: {}\n")
    assert "generatons" in msg and "did you mean 'generations'" in msg
    msg = error_of(tmp_path, "toy: {rowz: 3}\n")
    assert "toy.rowz" in msg and "toy.rows" in msg


def test_wrong_type(tmp_path):
    msg = error_of(tmp_path, "generations: three\ntoy: {}\n")
    assert "generations" in msg and "integer" in msg
    assert "toy.rows" in error_of(tmp_path, "toy: {rows: [1]}\n")


def test_out_of_range(tmp_path):
    assert ">= 1" in error_of(tmp_path, "generations: 0\ntoy: {}\n")
    assert "keep_fraction" in error_of(tmp_path, "regimes: [{name: replace, keep_fraction: 1.5}]\ntoy: {}\n")
    assert "regime" in error_of(tmp_path, "regimes: [replaec]\ntoy: {}\n")
    assert "executor" in error_of(tmp_path, "executor: cloud\ntoy: {}\n")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        experiments.load_config(tmp_path / "nope.yaml")
    assert "YAML" in error_of(tmp_path, "toy: {rows: [\n")


def test_overrides(tmp_path):
    p = write(tmp_path, "generations: 2\ntoy: {rows: 5}\n")
    run = experiments.load_config(p, overrides=["toy.rows=9", "seeds=[3]"], generations=4)
    assert run.section("toy").rows == 9 and run.seeds == [3]
    assert run.generations_of("toy") == 4
    # a section's own generation count is more specific than the run's --generations
    p2 = write(tmp_path, "generations: 2\ntoy: {generations: 7}\n")
    assert experiments.load_config(p2, generations=4).generations_of("toy") == 7
    assert experiments.load_config(p2, overrides=["toy.generations=5"], generations=4).generations_of("toy") == 5
    with pytest.raises(ConfigError, match="toy.rows"):
        experiments.load_config(p, overrides=["toy.rows=-1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        experiments.load_config(p, overrides=["nonsense"])


def test_an_override_with_an_empty_key_says_the_form(tmp_path):
    # `--set =3` read ": unknown key", `--set toy.=3` "toy.: unknown key": a key of no name, named
    p = write(tmp_path, "generations: 2\ntoy: {rows: 5}\n")
    for text in ("=3", "toy.=3", ".rows=3", "toy..rows=3", " =3"):
        with pytest.raises(ConfigError, match=r"^--set .*: expected section.key=value, a key of no empty part$"):
            experiments.load_config(p, overrides=[text])


def test_hash_ignores_locations_and_generations(tmp_path):
    a = experiments.config_from_dict({"generations": 2, "data_dir": "x", "toy": {}})
    b = experiments.config_from_dict({"generations": 5, "data_dir": "y", "executor": "debug", "toy": {}})
    c = experiments.config_from_dict({"toy": {"rows": 3}})
    assert a.hash() == b.hash() != c.hash()


def test_saved_config_round_trips(tmp_path):
    run = experiments.config_from_dict({"regimes": ["replace:0.1", "accumulate"], "toy": {"rows": 4}})
    p = write(tmp_path, cfgmod.dump(run))
    assert experiments.load_config(p).to_dict() == run.to_dict()


def test_seeds_must_not_be_negative(tmp_path):
    assert ">= 0" in error_of(tmp_path, "seeds: [0, -1]\ntoy: {}\n")
    msg = error_of(tmp_path, "toy: {seeds: [-2]}\n")
    assert "toy.seeds" in msg and ">= 0" in msg
    assert experiments.load_config(write(tmp_path, "seeds: [0, 7]\ntoy: {seeds: [3]}\n")).seeds_of("toy") == [3]


def test_keep_original_fraction_is_an_alias(tmp_path):
    run = experiments.load_config(write(tmp_path, "regimes: [{name: replace, keep_original_fraction: 0.1}]\n"
                                                  "toy: {regimes: [{name: replace, keep_original_fraction: 0.5}]}\n"))
    assert run.regimes == [Regime("replace", 0.1)] and run.regimes_of("toy") == [Regime("replace", 0.5)]
    msg = error_of(tmp_path, "regimes: [{name: replace, keep_fraction: 0.1, keep_original_fraction: 0.1}]\n"
                             "toy: {}\n")
    assert "keep_original_fraction" in msg and "only one" in msg
    assert "keep_fraction" in error_of(tmp_path, "regimes: [{name: replace, keep_original_fraction: 2}]\ntoy: {}\n")


def test_a_short_regime_s_number_is_that_regime_s_own(tmp_path):
    # verifier-filter:0.3 was read as keep_fraction 0.3 and refused: "keep_fraction applies to the replace
    # regime only", a key the user never wrote
    run = experiments.load_config(write(tmp_path, "regimes: ['replace:0.1', 'verifier-filter:0.3']\nlm: {}\n"))
    assert run.regimes == [Regime("replace", 0.1), Regime("verifier-filter", verifier_quantile=0.3)]
    msg = error_of(tmp_path, "regimes: ['accumulate:0.1']\ntoy: {}\n")
    assert "'accumulate:0.1': only replace and verifier-filter take a number" in msg
    assert "regime must be one of" in error_of(tmp_path, "regimes: ['replac:0.1']\ntoy: {}\n")


def test_docstring_names_a_real_command():
    assert "--help-keys" not in cfgmod.__doc__


def test_readme_configuration_reference_is_current():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start, end = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"
    assert start in readme and end in readme
    written = readme.split(start, 1)[1].split(end, 1)[0]
    assert written == cfgmod.describe_markdown(experiments.sections(experiments.BUILTIN)), \
        "README's configuration reference is stale: paste collapse_hpc.config.describe_markdown() between its markers"


def test_hash_ignores_where_and_how_long_only():
    base = {"name": "a", "executor": "local", "generations": 2, "toy": {"generations": 3}}
    h = experiments.config_from_dict(base).hash()
    assert experiments.config_from_dict({**base, "name": "b", "executor": "debug", "generations": 5,
                                         "toy": {"generations": 9}}).hash() == h
    assert experiments.config_from_dict({**base, "seeds": [1]}).hash() != h
    assert experiments.config_from_dict({**base, "regimes": ["accumulate"]}).hash() != h  # a regime's name counts


def test_regime_overrides_reach_only_their_experiment(tmp_path):
    run = experiments.load_config(write(tmp_path, "regimes: [replace, {name: replace, keep_fraction: 0.1, "
                                                  "toy: {rows: 7}, gmm: {samples: 50}}]\ntoy: {rows: 5}\ngmm: {}\n"))
    plain, special = run.regimes
    assert special.overrides == {"toy": {"rows": 7}, "gmm": {"samples": 50}}
    assert run.section_for("toy", plain).rows == 5 and run.section_for("toy", special).rows == 7
    assert run.section("toy").rows == 5  # the experiment's own section is untouched
    toy = experiments.get("toy").variants(run)
    assert [v.name for v in toy] == ["replace-p0-s0", "replace-p0.1-rows7-s0"]
    assert toy[1].section(run).rows == 7 and toy[1].settings == {"rows": 7}
    gmm = experiments.get("gmm").variants(run)  # toy's override is not gmm's business
    assert [v.name for v in gmm] == ["replace-p0-s0", "replace-p0.1-samples50-s0"]
    assert gmm[1].section(run).samples == 50 and gmm[1].regime.overrides == {"gmm": {"samples": 50}}


def test_regime_overrides_are_validated_like_their_section(tmp_path):
    msg = error_of(tmp_path, "regimes: [{name: replace, toy: {rowz: 3}}]\ntoy: {}\n")
    assert "regimes[0].toy.rowz" in msg and "did you mean 'regimes[0].toy.rows'" in msg
    assert ">= 1" in error_of(tmp_path, "regimes: [replace, {name: replace, toy: {rows: 0}}]\ntoy: {}\n")
    assert "regimes[1].toy.rows" in error_of(tmp_path, "regimes: [replace, {name: replace, toy: {rows: 0}}]\ntoy: {}\n")
    assert "integer" in error_of(tmp_path, "toy: {regimes: [{name: accumulate, toy: {rows: x}}]}\n")
    assert "toy.regimes[0].toy.rows" in error_of(tmp_path, "toy: {regimes: [{name: accumulate, toy: {rows: x}}]}\n")
    assert "per regime" in error_of(tmp_path, "regimes: [{name: replace, toy: {seeds: [1]}}]\ntoy: {}\n")
    assert "mapping" in error_of(tmp_path, "regimes: [{name: replace, toy: 3}]\ntoy: {}\n")
    assert "unknown key" in error_of(tmp_path, "regimes: [{name: replace, toyy: {rows: 3}}]\ntoy: {}\n")


def test_a_regime_s_unknown_key_lists_the_keys_one_writes(tmp_path):
    # the list named `overrides`, which is refused when written, and not the experiments' names, which work
    msg = error_of(tmp_path, "regimes: [{name: replace, toyy: {rows: 3}}]\ntoy: {}\n")
    assert "did you mean 'regimes[0].toy'?" in msg, msg
    valid = msg.split("valid keys: ")[1].split(", ")
    assert "toy" in valid and "keep_fraction" in valid and "overrides" not in valid, msg


def test_regime_overrides_round_trip_and_change_the_hash(tmp_path):
    text = "regimes: [{name: replace, keep_fraction: 0.1, toy: {rows: 7}}]\ntoy: {}\n"
    run = experiments.load_config(write(tmp_path, text))
    assert run.to_dict()["regimes"] == [{"name": "replace", "keep_fraction": 0.1, "toy": {"rows": 7}}]
    again = experiments.load_config(write(tmp_path, cfgmod.dump(run)))
    assert again.regimes == run.regimes and again.hash() == run.hash()
    assert experiments.load_config(write(tmp_path, "regimes: ['replace:0.1']\ntoy: {}\n")).hash() != run.hash()
    # without overrides the saved form is as before, so existing runs keep their hash
    assert experiments.config_from_dict({"toy": {}}).to_dict()["regimes"] == [{"name": "replace", "keep_fraction": 0.0}]


def test_paper_config_is_the_papers_lm_method():
    """configs/paper.yaml resolves to the paper's language-model setting (Nature 2024, Methods, Fig. 1)."""
    from pathlib import Path

    run = experiments.load_config(Path(__file__).resolve().parents[1] / "configs" / "paper.yaml")
    lm = run.section("lm")
    assert (lm.model, lm.dataset, lm.block_size, lm.pretrained) == ("facebook/opt-125m", "wikitext2", 64, True)
    assert (lm.decoding, lm.num_beams, lm.repetition_penalty) == (["beam"], 5, 3.0)
    assert (lm.prompts, lm.init, lm.eval_precision, lm.block_grouping) == ("real", "gen0", "fp32", "reference-4")
    assert (lm.sample_from, lm.ranks) == ("best", 1)  # the brief's workflow; ranks are only a speed knob
    assert run.generations_of("lm") == 10 and run.seeds_of("lm") == [0, 1, 2, 3, 4]
    variants = experiments.get("lm").variants(run)
    epochs = {(v.regime.keep_fraction, v.section(run).epochs) for v in variants}
    assert epochs == {(0.0, 5), (0.1, 10)} and len(variants) == 10
    assert {v.name for v in variants if v.seed == 0} == {"replace-p0-s0", "replace-p0.1-epochs10-s0"}
    assert {v.name for v in experiments.get("vae").variants(run) if v.seed == 0} == {"replace-p0-s0", "replace-p0.1-s0"}


def test_paper_config_fits_the_single_gaussian_as_the_papers_theory():
    """The paper's single Gaussian (Methods, "Theoretical intuition") estimates the variance with the
    unbiased estimator, 1/(M-1) sum (X - mu_hat)^2, and notes that maximum likelihood would be biased; its
    theorem (W2 to the original grows, the variance dies almost surely) is about that estimator. The
    notebook's np.std (ddof 0, the MLE) stays gaussian.estimator: mle."""
    from pathlib import Path

    run = experiments.load_config(Path(__file__).resolve().parents[1] / "configs" / "paper.yaml")
    gaussian = run.section("gaussian")
    assert gaussian.estimator == "unbiased"
    assert (gaussian.samples, run.generations_of("gaussian")) == ([100, 500, 1000, 10000], 1000)


def test_loading_a_config_knows_no_experiment_and_imports_nothing_above_it(tmp_path):
    """config.load is given the sections a config may hold; it imports no experiment, no engine and
    no launcher (none of them is loaded afterwards), checks no plan, and writes nothing."""
    import subprocess
    import sys
    import textwrap

    (tmp_path / "c.yaml").write_text("generations: 2\nseeds: [0, 1]\ntiny: {rows: 2}\n")
    code = textwrap.dedent("""
        import sys
        from dataclasses import dataclass

        from collapse_hpc import config

        @dataclass
        class Tiny(config.Section):
            rows: int = config.knob(1, "rows", min=1)

        run = config.load("c.yaml", ["tiny.rows=300000000"], sections={"tiny": Tiny})
        assert run.section("tiny").rows == 300000000 and run.seeds_of("tiny") == [0, 1]
        print(" ".join(sorted(m for m in sys.modules if m.startswith("collapse_hpc"))))
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    loaded = {m for m in r.stdout.split() if not m.startswith("collapse_hpc.regimes.")}  # the regimes floor
    assert loaded <= {"collapse_hpc", "collapse_hpc.config", "collapse_hpc.regimes", "collapse_hpc.yamlfile",
                      "collapse_hpc.errors"}, loaded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_beyond_config_measures_sampling_with_the_last_epoch():
    """configs/beyond.yaml runs the authors' main.py choice (sample_from: last) beside the paper's
    replace under beam search, which samples with the best epoch."""
    from pathlib import Path

    from collapse_hpc import experiments

    run = experiments.load_config(Path(__file__).resolve().parents[1] / "configs" / "beyond.yaml")
    chains = {v.name: v.section(run) for v in experiments.get("lm").variants(run)}
    assert chains["replace-p0-decodingbeam-sample_fromlast-s0"].sample_from == "last"
    assert chains["replace-p0-decodingbeam-s0"].sample_from == "best"


@pytest.mark.parametrize("text", ["1e-3", "1E-3", "+1e-3", "0.1e-2"])
def test_a_number_in_scientific_notation_is_a_number(tmp_path, text):
    """YAML 1.1 reads 1e-3 (no dot) as a string: a float key takes it as the number it is, from the
    file and from --set alike; text that is no number is still refused."""
    from collapse_hpc import experiments

    f = tmp_path / "c.yaml"
    f.write_text(f"lm:\n  lr: {text}\n")
    assert experiments.load_config(f).section("lm").lr == 0.001
    assert experiments.load_config(f, [f"lm.lr_min={text}"]).section("lm").lr_min == 0.001
    with pytest.raises(ConfigError, match="expected a number, got '1e-3x'"):
        experiments.load_config(f, ["lm.lr=1e-3x"])


def test_the_config_hash_is_the_one_run_folders_already_record():
    """Run folders made before how-it-runs knobs existed record this very hash (run.json, manifests,
    plan.json): the value main computed for this config, lm.ranks included."""
    made = {"name": "paper", "executor": "slurm", "generations": 4, "seeds": [0, 1],
            "regimes": [{"name": "replace", "keep_fraction": 0.1}],
            "lm": {"generations": 3, "ranks": 4, "epochs": 5, "lr": 2e-05}}
    assert cfgmod.config_hash(made) == "26ef04d8aecaebb8"


@dataclass
class _Unit(cfgmod.Section):
    rows: int = cfgmod.knob(3)
    workers: int = cfgmod.knob(1, "processes", hashed=False, exact=False)
    log_every: int = cfgmod.knob(10, "log lines", hashed=False)


def test_what_a_config_computes_leaves_out_how_it_runs_and_reads_missing_keys_as_their_defaults():
    sections = {"unit": _Unit}
    a = {"name": "a", "seeds": [0], "regimes": [{"name": "replace", "keep_fraction": 0.0, "unit": {"workers": 2}}],
         "unit": {"rows": 3, "workers": 4, "log_every": 10, "generations": 2}}
    older = {"name": "a", "seeds": [0], "regimes": [{"name": "replace", "keep_fraction": 0.0, "unit": {"workers": 2}}],
             "unit": {"workers": 1}}  # made before rows and log_every existed; rows at its default
    assert cfgmod.computed(a, sections) == cfgmod.computed(older, sections)
    assert cfgmod.diff(older, a, sections) == []
    assert cfgmod.diff(older, {**a, "unit": {"rows": 4}}, sections) == ["unit.rows: 3 -> 4"]
    assert cfgmod.runs_diff(older, a, sections) == [("unit.workers: 1 -> 4", False)]
    assert a["unit"]["workers"] == 4  # its input is left as it was
    # a regime's override names its variants (replace-p0-workers3-s0): another value is another chain
    other = {**a, "regimes": [{"name": "replace", "keep_fraction": 0.0, "unit": {"workers": 3}}]}
    assert cfgmod.diff(a, other, sections) == ["regimes[0].unit.workers: 2 -> 3"]  # the key, not the whole list
    assert cfgmod.regimes_changed(["regimes[0].unit.workers: 2 -> 3"], a).startswith(
        "; that is the unit chains unit/replace-p0-*: ")


def test_the_reference_says_which_knobs_a_run_may_change_when_it_resumes():
    text = cfgmod.describe({"unit": _Unit})
    assert "unit.workers = 1\n      processes; how it runs: a run resumes after a change, with a warning" in text
    assert "unit.log_every = 10\n      log lines; how it runs: a run resumes after a change (the same results)" in text
    assert "hashed" not in text
    lm = cfgmod.how_it_runs(experiments.config_class("lm"))
    assert lm["ranks"] is False and lm["checkpoint_every_steps"] is True and "lr" not in lm


def test_a_bad_value_given_with_set_is_said_of_set_not_of_the_file(tmp_path):
    """`--set gmm.generatons=2` read "configs/demo.yaml: gmm.generatons: unknown key": the file has no such
    key, and its author looked for it there. A bad key of the file itself still names the file."""
    f = tmp_path / "c.yaml"
    f.write_text("toy: {rows: 3}\n")
    for given, said in (("toy.rowz=4", "--set toy.rowz: unknown key (did you mean 'toy.rows'?)"),
                        ("toy.rows=four", "--set toy.rows: expected an integer, got 'four'"),
                        ("generatons=2", "--set generatons: unknown key (did you mean 'generations'?)"),
                        ("tooy.rows=4", "--set tooy: unknown key (did you mean 'toy'?)"),
                        ("regimes=[bogus]", "--set regimes[0]: regime must be one of ")):
        with pytest.raises(ConfigError) as e:
            experiments.load_config(f, [given])
        assert str(e.value).startswith(said), e.value
    f.write_text("toy: {rowz: 3}\n")
    with pytest.raises(ConfigError, match=f"^{f}: toy.rowz: unknown key"):
        experiments.load_config(f, ["toy.rows=4"])


def test_a_key_one_config_lacks_reads_absent_in_a_diff():
    """A typo in a run's config.yaml (epochs -> epoch) read 'lm.epoch: None -> 3; lm.epochs: 3 -> None', as if
    each had been set to None; a key set to null is still None."""
    old, new = {"lm": {"epochs": 3, "lr": None}}, {"lm": {"epoch": 3, "lr": 0.1}}
    assert cfgmod.diff(old, new) == ["lm.epoch: absent -> 3", "lm.epochs: 3 -> absent", "lm.lr: None -> 0.1"]


def _list_keys() -> list[tuple[str, type, str, type]]:
    """(prefix, config dataclass, key, item type) of every list-typed key of the run, each experiment's section
    and a cluster profile."""
    import dataclasses
    import typing

    from collapse_hpc.launch.profile import Profile

    found = []
    for prefix, cls in [("", cfgmod.RunConfig), *((f"{n}.", c) for n, c in experiments.sections().items()),
                        ("", Profile)]:
        for name, tp in typing.get_type_hints(cls).items():
            lists = [a for a in (tp, *typing.get_args(tp)) if typing.get_origin(a) is list]
            if lists and name in {f.name for f in dataclasses.fields(cls)}:
                found.append((prefix, cls, name, typing.get_args(lists[0])[0]))
    return found


def test_a_number_where_a_list_is_expected_is_refused_in_every_list_key():
    """`seeds: 5` was taken as [5]: it may as well mean five replicates. Every list key refuses a number, one
    line saying it is a list and how to write one."""
    keys = _list_keys()
    assert {"seeds", "regimes", "samples", "snapshot_generations", "decoding", "setup"} <= {k for _, _, k, _ in keys}
    for prefix, cls, key, _ in keys:
        for number in (5, 0.5):
            with pytest.raises(ConfigError) as e:
                cfgmod.build(cls, {key: number}, "c.yaml", prefix=prefix)
            assert str(e.value).startswith(f"c.yaml: {prefix}{key}: is a list, got {number}; write [{number}] for "), \
                str(e.value)
        with pytest.raises(ConfigError, match=f"^c.yaml: {prefix}{key}: expected a list, got True$"):
            cfgmod.build(cls, {key: True}, "c.yaml", prefix=prefix)


def test_a_string_where_a_list_of_strings_is_expected_is_a_list_of_one():
    """`decoding: beam`, `regimes: replace`, a profile's `setup: "module load x"`: one string says one item
    (unlike a number); every list key of strings (or regimes) takes it as the list of that one."""
    one = {"regimes": "replace:0.1", "decoding": "top_p:0.9", "setup": "module load cuda/12"}
    keys = [(p, c, k) for p, c, k, i in _list_keys() if i in (str, Regime)]
    assert {k for _, _, k in keys} == set(one)
    for prefix, cls, key in keys:
        got = getattr(cfgmod.build(cls, {key: one[key]}, "c.yaml", prefix=prefix), key)
        assert got == getattr(cfgmod.build(cls, {key: [one[key]]}, "c.yaml", prefix=prefix), key), key
        assert len(got) == 1, key
    for prefix, cls, key, item in _list_keys():
        if item not in (str, Regime):  # a string of a list of numbers is not a list
            with pytest.raises(ConfigError, match=f"^c.yaml: {prefix}{key}: expected a list, got '5'$"):
                cfgmod.build(cls, {key: "5"}, "c.yaml", prefix=prefix)


def test_seeds_given_as_a_number_says_both_readings(tmp_path):
    assert error_of(tmp_path, "seeds: 5\ntoy: {}\n").endswith(
        "c.yaml: seeds: is a list, got 5; write [5] for seed 5, or [0, 1, 2, 3, 4] for 5 replicates")
    assert error_of(tmp_path, "seeds: 0\ntoy: {}\n").endswith("seeds: is a list, got 0; write [0] for seed 0")
    assert error_of(tmp_path, "seeds: [0]\ntoy: {seeds: 12}\n").endswith(
        "toy.seeds: is a list, got 12; write [12] for seed 12, or [0, 1, 2, 3, 4, …] for 12 replicates")
    assert "expected a list, got None" in error_of(tmp_path, "seeds: null\ntoy: {}\n")
    with pytest.raises(ConfigError, match=r"^--set seeds: is a list, got 5; write \[5\] for seed 5, or \[0, 1, 2, 3"):
        experiments.load_config(write(tmp_path, "toy: {}\n"), overrides=["seeds=5"])
    assert experiments.load_config(write(tmp_path, "toy: {}\n"), overrides=["seeds=[5]"]).seeds == [5]


@pytest.mark.parametrize("refusal", [errno.EACCES, errno.EIO], ids=["EACCES", "EIO"])
def test_a_config_the_file_system_will_not_read_is_not_read_naming_it_from_config_load(tmp_path, monkeypatch,
                                                                                       refusal):
    """config.load let a refused read go up as a raw OSError (with EIO naming no file); only its caller
    experiments.load_config said it in one line. The loader of configs says it itself."""
    from collapse_hpc.errors import AGAIN, NotRead
    from tests.helpers import refuse_reads
    from tests.toy_experiment.config import ToyConfig

    path = write(tmp_path, "toy: {}\n")
    refuse_reads(monkeypatch, path, refusal)
    with pytest.raises(NotRead) as said:
        cfgmod.load(path, sections={"toy": ToyConfig})
    assert str(said.value) == (f"config file {path}: not read ({os.strerror(refusal)}): nothing is done; it is "
                               f"done {AGAIN}")
    assert said.value.filename == path
