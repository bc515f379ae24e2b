"""The README, data/README, docs/ and the configs' and profiles' comments as a newcomer reads them: links
that resolve, the cluster guide in order, and every make target, command, flag and config key they
name exists."""
import dataclasses
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "data" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a '# comment' in a code block is no heading
    return {anchor(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if "://" in target:
            continue
        path, _, frag = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.is_file(), f"{page.name}: link to {target}: no such file"
        if frag:
            assert frag in anchors(dest), f"{page.name}: link to {target}: no such heading"


def test_anchor_follows_github():
    assert anchor("1. Build the image (Containers)") == "1-build-the-image-containers"
    assert anchor("What each experiment shows") == "what-each-experiment-shows"


def test_readme_opens_with_two_commands_then_the_cluster_guide_in_order():
    text = (REPO / "README.md").read_text()
    sections = re.findall(r"^## (.+)$", text, flags=re.M)
    assert sections[:3] == ["Two commands on a fresh machine", "On a cluster", "What each experiment shows"]
    assert sections[-1] == "Configuration reference"
    first = text.split("\n## ", 2)[1]
    assert "make demo" in first and "make test" in first
    guide = text.split("\n## On a cluster\n", 1)[1].split("\n## ", 1)[0]
    steps = re.findall(r"^### \d\. (.+)$", guide, flags=re.M)
    order = ["image", "sif", "stage", "dry run", "submit", "status", "aggregate"]
    assert len(steps) == len(order) and all(word in step.lower() for word, step in zip(order, steps)), steps


# --- what the pages tell a reader to type: every make target and variable, every collapse-hpc
# command and flag, every config key they name, exists (the code, not the page, is the judge)

YAMLS = [*sorted((REPO / "configs").glob("*.yaml")), *sorted((REPO / "slurm").glob("*.yaml"))]


def code_of(page: Path) -> list[str]:
    """What a reader copies: the lines of fenced blocks and the inline code spans (not the generated
    config reference), or, in a YAML file, its comments."""
    text = page.read_text()
    if page.suffix == ".yaml":
        return [line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line]
    text = text.split("<!-- config-reference:start -->")[0]
    blocks = [line for b in re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S) for line in b.splitlines()]
    return blocks + re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))


SNIPPETS = [(page, s) for page in PAGES + YAMLS for s in code_of(page)]


def makefile() -> tuple[set[str], set[str]]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", text, flags=re.M)), set(re.findall(r"\$\(([A-Z_]+)\)", text))


def test_every_make_target_and_variable_the_pages_name_exists():
    targets, variables = makefile()
    seen = 0
    for page, s in SNIPPETS:
        start = r"^" if page.suffix == ".yaml" else r"(?:^|[\s(])"  # a comment's prose says "make the …"
        for target, assigns in re.findall(start + r"make ([a-z][a-z-]*)((?: [A-Z_]+=\S*)*)", s):
            seen += 1
            assert target in targets, f"{page.name}: make {target}: no such target in the Makefile ({s})"
            for var in re.findall(r" ([A-Z_]+)=", assigns):
                assert var in variables, f"{page.name}: make {target} {var}=: the Makefile reads no {var} ({s})"
    assert seen > 20  # the pages' make lines were found, not skipped


def _subcommands(parser) -> dict:
    import argparse

    return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def test_every_collapse_hpc_command_and_flag_the_pages_name_parses():
    from collapse_hpc import cli

    top, seen = cli._parser(), 0
    for page, s in SNIPPETS:
        start = r"^" if page.suffix == ".yaml" else r"(?:^|[\s/(])"
        for m in re.finditer(start + r"collapse-hpc ([a-z][a-z|]*)((?: [a-z]+)?)([^#]*)", s):
            for name in m[1].split("|"):
                seen += 1
                parser = _subcommands(top).get(name)
                assert parser is not None, f"{page.name}: collapse-hpc {name}: no such command ({s})"
                action = m[2].strip()
                if action in _subcommands(parser):
                    parser = _subcommands(parser)[action]
                known = {o for a in parser._actions for o in a.option_strings}
                for flag in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", m[2] + m[3]):
                    assert flag in known, f"{page.name}: collapse-hpc {name} {flag}: no such flag ({s})"
    assert seen > 20


def test_every_config_key_the_pages_name_exists():
    from collapse_hpc import experiments

    keys = {name: {f.name for f in dataclasses.fields(section)}
            for name, section in experiments.sections(experiments.BUILTIN).items()}
    sections = "|".join(keys)
    seen = 0
    for page in PAGES + YAMLS:
        text = page.read_text().split("<!-- config-reference:start -->")[0]
        named = re.findall(rf"(?<![\w./-])({sections})\.([a-z_]+)", text)
        for section, body in re.findall(rf"(?<![\w./-])({sections}): \{{([^{{}}]*)\}}", text):
            named += [(section, k) for k in re.findall(r"(\w+):", body)]
        for section, key in named:
            seen += 1
            assert key in keys[section], f"{page.name}: {section}.{key}: no such key (collapse-hpc config lists them)"
    assert seen > 40


def test_every_benchmark_flag_the_table_names_is_the_scripts():
    rows = re.findall(r"^\| `(\w+\.py)` \|(.*)$", (REPO / "docs" / "benchmarks.md").read_text(), flags=re.M)
    assert len(rows) >= 4
    # make bench runs every Python script there: each has its row
    assert sorted(script for script, _ in rows) == sorted(p.name for p in (REPO / "benchmarks").glob("*.py"))
    for script, row in rows:
        source = (REPO / "benchmarks" / script).read_text()
        for flag in re.findall(r"`(--[a-z][\w-]*)", row):
            assert f'"{flag}"' in source, f"docs/benchmarks.md: {script} {flag}: the script takes no such flag"


def test_the_commands_help_lists_every_command():
    from collapse_hpc import cli, experiments

    summary, plugged = cli.__doc__, set(experiments.names()) - set(experiments.BUILTIN)  # the tests' toys
    for name in set(_subcommands(cli._parser())) - plugged:
        assert re.search(rf"collapse-hpc (\S+\|)?{name}\b", summary), f"collapse-hpc --help: {name} is not listed"


def test_the_commands_help_says_every_meaning_in_one_column():
    # `data list`'s meaning began one column left of every other's
    from collapse_hpc import cli

    lines = [line for line in cli.__doc__.splitlines() if line.startswith("  ")]
    starts = {re.match(r"  (collapse-hpc .*?\S  +|\s+)\S", line).end() - 1 for line in lines}
    assert len(starts) == 1, f"collapse-hpc --help: meanings start at columns {sorted(starts)}"


def test_a_run_and_its_report_hold_what_the_outputs_block_names(tmp_path, capsys):
    """The run's own files, its logs, every unit's manifest and metrics, and the report's files, as a
    local run of the tests' toy experiment and its aggregate write them (each experiment's own files
    are checked by its end-to-end test: lm's test_chain, vae's test_run, gmm's test_gmm_run)."""
    from collapse_hpc import cli
    from tests.helpers import holds, readme_outputs

    outputs = readme_outputs()
    assert {"run", "logs", "unit", "report", "lm", "vae", "gmm"} <= set(outputs), outputs
    config = tmp_path / "toy.yaml"
    config.write_text("name: toy\ngenerations: 2\nexecutor: local\ntoy: {rows: 2}\n")
    run = tmp_path / "run"
    assert cli.main(["run", str(config), "--run", str(run)]) == 0
    assert cli.main(["aggregate", str(run)]) == 0
    capsys.readouterr()
    where = {"run": [run], "logs": [run / "logs"], "report": [run / "report"],
             "unit": sorted(run.glob("toy/*/gen_*"))}
    assert len(where["unit"]) == 2
    for part, folders in where.items():
        for pattern in outputs[part]:
            for folder in folders:
                assert holds(folder, pattern), f"README, Outputs: {folder} holds no {pattern}"


MADE_BY_THE_USER = {"slurm/site.yaml", "slurm/x.yaml", "slurm/mycluster.yaml"}  # profile init writes site.yaml


def test_every_repository_file_the_pages_name_exists():
    """A path under the repository's own folders that a page puts in code (a script, a config, a test, a
    module) is there; data/'s prepared sets and the profiles a user writes are not the repository's."""
    seen = 0
    for page, s in SNIPPETS:
        for path in re.findall(r"(?<![\w/.$-])((?:benchmarks|collapse_hpc|configs|docs|slurm|tests)/[\w./*-]*)", s):
            path = path.rstrip(".")
            if path in MADE_BY_THE_USER or not ("." in path.rsplit("/", 1)[-1] or path.endswith("/")):
                continue
            seen += 1
            assert list(REPO.glob(path.rstrip("/"))), f"{page.name}: {path}: no such file or folder ({s})"
    assert seen > 30


def test_the_generations_help_names_every_shipped_section_that_keeps_its_own_count():
    # it named gmm and gaussian only: `make demo GENERATIONS=5` left demo.yaml's vae at its own 6 unsaid
    import yaml

    from collapse_hpc import cli

    for config in sorted((REPO / "configs").glob("*.yaml")):
        data = yaml.safe_load(config.read_text())
        for section, body in data.items():
            if isinstance(body, dict) and "generations" in body and section not in ("gmm", "gaussian"):
                assert f"the {section} in {config.name}" in cli.GENERATIONS_HELP, (config.name, section)


def test_the_modules_mypy_checks_are_the_ones_readme_and_make_help_name():
    import tomllib

    files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    names = sorted(Path(f).stem for f in files)
    readme = re.search(r"mypy over ([\w, ]+);", (REPO / "README.md").read_text())
    make = re.search(r"mypy over ([\w, ]+), import-linter", (REPO / "Makefile").read_text())
    assert readme and make
    for said in (readme[1], make[1]):
        assert sorted(re.split(r",\s*|\s+and\s+", said.strip())) == names, said


def _commands(parser, path=()):
    """(words, parser) of every command and action under `parser`: ("data", "list"), ("run",), …"""
    for name, sub in _subcommands(parser).items():
        yield (*path, name), sub
        yield from _commands(sub, (*path, name))


def test_the_commands_help_and_readme_list_every_action():
    # `collapse-hpc data list` was in neither: a newcomer never learnt it was there
    from collapse_hpc import cli, experiments

    readme = (REPO / "README.md").read_text().split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    plugged = set(experiments.names()) - set(experiments.BUILTIN)
    for words, _ in _commands(cli._parser()):
        if len(words) > 1 and words[0] not in plugged:
            line = rf"collapse-hpc {' '.join(words)}\b"
            assert re.search(line, cli.__doc__), f"collapse-hpc --help: {' '.join(words)} is not listed"
            assert re.search(line, readme), f"README, Commands: {' '.join(words)} is not listed"


def test_every_option_of_every_command_says_what_it_does():
    # `collapse-hpc lm --help` listed -lr, -m, -b and -seed with no word on what they set
    import argparse

    from collapse_hpc import cli

    top = cli._parser()
    for words, parser in [((), top), *_commands(top)]:
        for action in parser._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help, f"collapse-hpc {' '.join(words)} {action.option_strings[-1]}: no help text"


def test_every_command_s_help_says_what_it_does():
    # `data list --help` and `profile init --help` showed their options alone; `verify --help` said when it exits 1,
    # not what it checks
    from collapse_hpc import cli, experiments

    plugged = set(experiments.names()) - set(experiments.BUILTIN)
    for words, parser in _commands(cli._parser()):
        if words[0] not in plugged:
            assert parser.description, f"collapse-hpc {' '.join(words)} --help: no word on what it does"
    verify = dict(_commands(cli._parser()))[("verify",)].description
    assert "re-hash" in verify.lower(), verify


def test_the_extending_guide_names_everything_an_experiment_may_set():
    # ranks, data_sets, hub_models (what stage fetches), redone_after, texts, … were nowhere in the guide:
    # a new experiment's author learnt of them only from base.py
    from collapse_hpc.experiments.base import Experiment

    guide = (REPO / "docs" / "extending.md").read_text()
    named = set(re.findall(r"`([a-z_]+)(?:\(|`)", guide))
    internal = {"unmet"}  # Registration's own check, not a hook
    for member in vars(Experiment):
        if not member.startswith("_") and member not in internal:
            assert member in named, f"docs/extending.md: Experiment.{member} is not named"


def test_the_layout_names_every_config_module_and_package():
    # it named three of the four shipped configs (not cluster-smoke.yaml) and left out errors.py, logs.py
    # and yamlfile.py, the floors every other module stands on
    layout = (REPO / "README.md").read_text().split("\n## Layout\n", 1)[1].split("```", 2)[1]
    package = REPO / "collapse_hpc"
    names = [p.name for p in (REPO / "configs").glob("*.yaml")]
    names += [p.name for p in package.glob("*.py") if not p.name.startswith("_")]
    names += [f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").is_file()]
    for name in names:
        assert re.search(rf"(?<![\w-]){re.escape(name)}", layout), f"README, Layout: {name} is not named"


def test_the_container_section_shown_names_every_key_of_it():
    # it showed five keys and not `runtime`, which a site with SingularityCE alone needs
    import yaml

    from collapse_hpc.launch.container import ContainerConfig

    page = (REPO / "docs" / "containers.md").read_text()
    block = page.split("## The profile's `container:` section", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    shown = yaml.safe_load(block)["container"]
    assert set(shown) == {f.name for f in dataclasses.fields(ContainerConfig)}
    for key, value in shown.items():  # the example's values are each key's default where it says so
        line = next(line for line in block.splitlines() if line.strip().startswith(f"{key}:"))
        if "default" in line:
            assert value == getattr(ContainerConfig(), key), line


MAKE_INTERNAL = {"VENV", "PY", "CLI", "PYTHON", "LOCK_ARGS", "MAKEFILE_LIST"}  # not a reader's to set per target


def test_make_help_names_every_variable_a_target_reads():
    # `make help` said nothing of demo's CONFIG, RUN, GENERATIONS and EXECUTOR (the README's
    # `make demo CONFIG=configs/beyond.yaml RUN=runs/beyond`), nor of the tests' PYTEST_ARGS
    text = (REPO / "Makefile").read_text()
    targets = re.findall(r"^([a-z][a-z-]*):[^\n#]*## ([^\n]*)\n((?:\t[^\n]*\n|#[^\n]*\n)*)", text, flags=re.M)
    assert len(targets) > 15
    for target, help_text, recipe in targets:
        for var in set(re.findall(r"\$\(([A-Z_]+)\)", recipe)) - MAKE_INTERNAL:
            assert re.search(rf"\b{var}\b", help_text), f"make help: {target} reads {var} but its line does not say so"


def test_every_config_example_the_pages_show_loads():
    # a YAML block with an experiment's section is a config a reader copies: its keys and values pass
    # the same checks as a config file's (`{...}` stands for a section left out)
    import yaml

    from collapse_hpc import experiments

    seen = 0
    for page in PAGES:
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), flags=re.S):
            raw = yaml.safe_load(block.replace("{...}", "{}"))
            if set(raw) & set(experiments.BUILTIN):
                seen += 1
                experiments.config_from_dict(raw, page.name)
    assert seen >= 2


def test_every_pointer_to_a_readme_section_names_one():
    # make sif sent a reader without Apptainer to "README: Containers": no such section, and the
    # docker save steps are in step 2
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", (REPO / "README.md").read_text(), flags=re.S),
                          flags=re.M)
    sources = [REPO / "Makefile", *sorted((REPO / "collapse_hpc").rglob("*.py"))]
    seen = 0
    for source in sources:
        for m in re.finditer(r"README[:,] (.*)", source.read_text()):
            seen += 1
            assert any(m[1].startswith(h) for h in headings), f"{source.name}: README section {m[1]!r}: no such heading"
    assert seen >= 3


def test_run_s_help_says_the_config_s_executor_decides_where():
    # `collapse-hpc --help` said run runs "here (local processes)"; with paper.yaml (executor: slurm) it submits
    import yaml

    from collapse_hpc import cli

    elsewhere = [c.name for c in (REPO / "configs").glob("*.yaml")
                 if yaml.safe_load(c.read_text()).get("executor", "local") != "local"]
    assert elsewhere  # paper.yaml
    summary = re.search(r"collapse-hpc run CONFIG +(.*?)\n  collapse-hpc ", cli.__doc__, flags=re.S)[1]
    top = cli._parser()
    listed = next(a for a in top._actions if a.dest == "command")._choices_actions  # COMMAND's one-line helps
    line = next(a.help for a in listed if a.dest == "run")
    for said in (summary, line, _subcommands(top)["run"].description):
        assert "executor" in said and "here (local processes)" not in said, said


def _synopsis(readme: str, words: tuple[str, ...]) -> str:
    """The README's synopsis of `collapse-hpc WORDS`: its line and the indented lines continuing it, no comments."""
    m = re.search(rf"^collapse-hpc {' '.join(words)}(?![\w-])(.*(?:\n {{4,}}\S.*)*)", readme, flags=re.M)
    assert m, f"README, Commands: collapse-hpc {' '.join(words)} has no synopsis line"
    return " ".join(line.split("#", 1)[0] for line in m[1].splitlines())


def test_the_readme_synopsis_shows_every_option_of_every_command():
    # `data prepare --data-dir/--force`, `run --force/--profile` and `stage --set` were missing from it
    import argparse

    from collapse_hpc import cli, experiments

    readme = (REPO / "README.md").read_text().split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    hand = set(experiments.names())  # lm|gmm|gaussian|vae: the reference flags, `--help` of each
    for words, parser in _commands(cli._parser()):
        if words[0] in hand or _subcommands(parser):
            continue
        line = _synopsis(readme, words)
        for action in parser._actions:
            hidden = action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction)
            if not action.option_strings or hidden:
                continue
            flag = max(action.option_strings, key=len)
            shown = re.search(rf"\[{flag}(?![\w-])([^\]]*)\](\.\.\.)?", line)
            assert shown, f"README, Commands: collapse-hpc {' '.join(words)} {flag} is not shown"
            repeatable = isinstance(action, argparse._AppendAction)
            assert bool(shown[2]) == repeatable, f"README: collapse-hpc {' '.join(words)} {flag}: '...' iff repeatable"
            if action.choices:
                assert set(shown[1].strip().split("|")) == set(action.choices), f"README: {flag}'s choices differ"


def test_the_configuration_section_says_an_experiment_without_a_section_does_not_run():
    # a newcomer's config without a gmm: section ran no GMM, and the Configuration section did not say so
    from collapse_hpc import experiments

    configuration = (REPO / "README.md").read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    said = " ".join(configuration.split())
    assert "a config without a `gmm:` section runs no GMM (a bare `gmm:` or `gmm: {}` runs it" in said
    assert experiments.config_from_dict({"name": "t", "vae": {}}).enabled() == ["vae"]
    assert set(experiments.config_from_dict({"name": "t", "vae": {}, "gmm": None}).enabled()) == {"gmm", "vae"}
