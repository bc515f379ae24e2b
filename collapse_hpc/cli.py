"""The collapse-hpc command.

  collapse-hpc run CONFIG            run every experiment of a config where its executor says (local processes
                                     by default; paper.yaml's executor: slurm submits)
  collapse-hpc submit CONFIG         the same as Slurm jobs (chains, arrays), returns at once
  collapse-hpc profile init          write slurm/site.yaml, this checkout's cluster profile, from sinfo
  collapse-hpc stage CONFIG          prepare its data sets, fetch its models where the profile's jobs look
  collapse-hpc status RUN            per chain: generation reached, job states
  collapse-hpc cancel RUN            cancel the run's queued and running Slurm jobs, or stop its local launcher
  collapse-hpc aggregate RUN [RUN…]  tidy tables, figures, results page
  collapse-hpc verify RUN            re-hash every artefact against its manifest
  collapse-hpc data prepare NAME     prepare a data set under data/
  collapse-hpc data list             the data sets prepared under data/
  collapse-hpc config [CONFIG]       every config key with its default and meaning, or a resolved config
  collapse-hpc lm|gmm|gaussian|vae   run one experiment (or one unit of it) by hand
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
import sys
from pathlib import Path

from collapse_hpc import __version__, logs
from collapse_hpc.errors import UserError, one_line, path_argument
from collapse_hpc.logs import count
from collapse_hpc.machine import available_memory, gpu_ids, term_as_interrupt, total_memory

EPILOG = "Any bad input (config key, file, model) ends with one 'error:' line and exit status 2."


GENERATIONS_HELP = ("generations of the run's chains (overrides the config's run-level generations); "
                    "a section with its own generations keeps it, and a note: line says so (gmm and gaussian in the "
                    "shipped configs, and the vae in demo.yaml)")
EXPERIMENT_GENERATIONS_HELP = "generations of this experiment's chains (sets its section's generations)"
SET_HELP = "override one config value, e.g. --set gmm.replicates=64 (repeatable)"


def _config_args(p: argparse.ArgumentParser, only: bool = True) -> None:
    p.add_argument("config", type=path_argument, help="config YAML (configs/demo.yaml, configs/paper.yaml, …)")
    p.add_argument("--run", type=path_argument, metavar="DIR", help="run folder (default: runs/<config file name>)")
    p.add_argument("--generations", type=int, metavar="N",
                   help=GENERATIONS_HELP if only else EXPERIMENT_GENERATIONS_HELP)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
                   help=SET_HELP)
    p.add_argument("--force", action="store_true",
                   help="allow a plan over 2000 units (engine.LARGE_UNITS) or estimated over 100 GPU-hours "
                        "(launch.estimate.LARGE_GPU_HOURS), or a generation count that redoes finished array "
                        "parts (their results are deleted)")
    if only:  # a per-experiment subcommand runs its own experiment only
        p.add_argument("--only", action="append", metavar="EXPERIMENT",
                       help="run only this experiment (repeatable)")


class _Parser(argparse.ArgumentParser):
    """Bad usage is bad input like any other: one `error:` line (naming the command and its --help)
    and exit status 2, not argparse's usage block above it. Subcommands' parsers are of this class too,
    so each one's --help ends with the same EPILOG."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("epilog", EPILOG)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        # a subcommand refuses its own unknown flags: argparse would hand them up to `collapse-hpc`,
        # whose line names the top --help, not the one listing that subcommand's flags
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    from collapse_hpc import experiments
    from collapse_hpc.config import EXECUTORS

    p = _Parser(prog="collapse-hpc", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"collapse-hpc {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    r = sub.add_parser("run", help="run a config where its executor (or --executor) says: local by default",
                       description="Run every enabled experiment of CONFIG where its executor says: local "
                                   "subprocesses unless the config, --executor or --profile names another (slurm "
                                   "submits, as submit does); finished units are skipped, unfinished ones redone. "
                                   "Results go to the run folder.")
    _config_args(r)
    r.add_argument("--executor", choices=EXECUTORS,
                   help="local: subprocesses; debug: in this process; slurm: submit (default: the config's "
                        "executor:, local where it names none; with --profile: the profile's, slurm unless it "
                        "says otherwise)")
    r.add_argument("--profile", type=path_argument, metavar="YAML", help="cluster profile (slurm/local.yaml, …)")

    s = sub.add_parser("submit", help="submit a config to Slurm (returns at once)",
                       description="Submit each chain as afterok-chained jobs and each array experiment "
                                   "as a job array, plus a final aggregation job. Only what is neither "
                                   "done nor queued is submitted.")
    _config_args(s)
    s.add_argument("--profile", type=path_argument, metavar="YAML",
                   help="cluster profile (default: an existing run's own, its earlier submit's; else the config's "
                        "`profile:`, else slurm/site.yaml)")
    s.add_argument("--dry-run", action="store_true", help="print the plan, each kind of sbatch script, the "
                   "estimated GPU-hours, wall time and disk, and every failing check; write and queue nothing "
                   "(exit 2 only when a check failed)")

    pr = sub.add_parser("profile", help="the site's cluster profile (slurm/site.yaml)",
                        description="init: write a starter slurm/site.yaml from sinfo (submit uses it when "
                                    "neither --profile nor the config's profile: names one).")
    prsub = pr.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    pi = prsub.add_parser("init", help="write a starter profile from sinfo",
                          description="Write a starter cluster profile from sinfo: the default partition, a "
                                      "partition with GPUs for the GPU jobs, time limits within the partitions', "
                                      "memory and CPUs within their largest node's; check its account, QOS and "
                                      "container image before submitting.")
    pi.add_argument("--out", type=path_argument, default="slurm/site.yaml", metavar="YAML",
                    help="the profile file to write (default: slurm/site.yaml, which submit uses where neither "
                         "--profile nor the config names one)")
    pi.add_argument("--force", action="store_true", help="replace an existing file")

    sg = sub.add_parser("stage", help="prepare the data sets and fetch the models a config needs",
                        description="On a login node with internet: prepare every data set and download every "
                                    "hub model the config's variants need, into the config's data folder and "
                                    "the HF cache the profile's jobs use (its env.HF_HOME or HF_HUB_CACHE), then run "
                                    "the checks submit runs. A config run here (executor local or debug) where no "
                                    "profile is found is staged for that run: this shell's HF cache, run's checks. "
                                    "Done ones are skipped.")
    sg.add_argument("config", type=path_argument, help="config YAML")
    sg.add_argument("--profile", type=path_argument, metavar="YAML",
                    help="cluster profile (default: the config's `profile:`, else slurm/site.yaml; a config of "
                         "executor local or debug without either: none, staged for a run here)")
    sg.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
                    help=SET_HELP)

    ca = sub.add_parser("cancel", help="cancel a run's queued and running Slurm jobs, or stop its local launcher",
                        description="scancel every job of RUN (its jobs.json) still queued or running; finished "
                                    "units stay, and submit queues what is left. A run launched here by "
                                    "`collapse-hpc run` is stopped as Ctrl-C stops it (its launcher and units, on "
                                    "this host); a next run goes on from its finished units.")
    ca.add_argument("run", type=path_argument, help="run folder")

    st = sub.add_parser("status", help="progress of a run", description="Per chain: generation reached, "
                        "job states (summarised where every unit would not fit a screen: --all lists them) "
                        "and, for a failed job, its log and last lines; for a job that completed "
                        "without its unit being done, the missing artefact and the command that redoes it.")
    st.add_argument("run", type=path_argument, help="run folder")
    st.add_argument("--json", action="store_true", help="print the state as JSON (for scripts)")
    st.add_argument("--all", action="store_true", dest="every",
                    help="every unit on its own line (a run too long for a screen is otherwise summarised: units "
                         "by state, each chain, the failed ones in full)")

    a = sub.add_parser("aggregate", help="tables, figures and the results page of runs",
                       description="Write RUN/report/{metrics.parquet, summary.csv, figures, index.html, results.md}.")
    a.add_argument("runs", type=path_argument, nargs="+", metavar="RUN",
                   help="run folder(s); several are drawn side by side")
    a.add_argument("--out", type=path_argument, metavar="DIR",
                   help="report folder (default: RUN/report of the first run)")
    a.add_argument("--replicates", type=int, metavar="K",
                   help="use only the first K replicates of each variant (gmm, gaussian): a report of many "
                        "replicates holds every value in memory (submit --dry-run estimates how much); the page "
                        "says so")

    v = sub.add_parser("verify", help="re-hash every artefact against its manifest",
                       description="Re-hash every artefact of RUN against its unit's manifest. Exit 1 on any "
                                   "mismatch, naming the file and the command that redoes it.")
    v.add_argument("run", type=path_argument, help="run folder")

    d = sub.add_parser("data", help="prepare data sets", description="Prepare data sets as Parquet under data/.")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    from collapse_hpc.data import preparers

    known = ", ".join(preparers())
    dp = dsub.add_parser("prepare", help=f"prepare NAME ({known}, or any name with --from)", description=(
        "Write NAME's train, validation and test splits (Parquet, a column text) and its card under --data-dir. "
        "--from (the lm): a row is a line of a text file, or the field or column named text of a JSON, CSV, "
        "Parquet or Arrow record (another name is refused with the line that renames it). Files or folders "
        "named for a split by a word of their own (train; validation, valid or dev; test: wiki.test.tokens, "
        "train-00000.parquet) keep it, all three needed; else a folder of 20 files or more is split 90/5/5 by "
        "file, and fewer files' rows 90/5/5 by a hash of each row. Each split needs text for one block of 64 "
        "tokens at least (a run, for one of its lm.block_size). A run reads it as lm.dataset: NAME (--set "
        "lm.dataset=NAME). --from a folder of MNIST's four IDX files: the vae's images (vae.dataset: NAME)."))
    dp.add_argument("name", metavar="NAME", help=f"data set to prepare: {known}, "
                    "or a new name for the files given with --from")
    dp.add_argument("--from", type=path_argument, dest="source", metavar="PATH",
                    help="your own files to prepare instead: text, JSON lines, CSV, Parquet or datasets files (the "
                    "lm; data/README.md lists the formats), or a folder of "
                    "MNIST-named IDX images (the vae)")
    dp.add_argument("--data-dir", type=path_argument, default="data", help="where prepared data goes (default: data)")
    dp.add_argument("--force", action="store_true", help="prepare again even if present")
    dl = dsub.add_parser("list", help="list prepared data sets",
                         description="Each data set prepared under --data-dir: its name, where it came from and "
                                     "the size of each split.")
    dl.add_argument("--data-dir", type=path_argument, default="data", help="where prepared data is (default: data)")

    c = sub.add_parser("config", help="show every config key, or a resolved config",
                       description="Without CONFIG: every key with its default and meaning. With CONFIG: the "
                                   "resolved, validated config (after --set/--generations) and its hash, then the "
                                   "checks of its inputs that run makes before starting (data sets prepared, "
                                   "models loadable): one failing is run's line on stderr, exit status 2.")
    c.add_argument("config", type=path_argument, nargs="?", help="config YAML to resolve (without it: every key)")
    c.add_argument("--generations", type=int, metavar="N", help=GENERATIONS_HELP)
    c.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE",
                   help=SET_HELP)

    for name in experiments.names():
        exp_parser = sub.add_parser(name, help=f"run the {name} experiment by hand",
                                    description=f"Run only the {name} experiment of CONFIG in this process "
                                                f"(or one unit with --variant/--unit).")
        hook = _experiment_cli(name)
        if hook:
            hook.add_arguments(exp_parser)
        else:
            _config_args(exp_parser, only=False)
            exp_parser.add_argument("--variant", help="run one variant only")
            exp_parser.add_argument("--unit", type=int, metavar="N",
                                    help="run one unit (generation or chunk) only")
    return p


def _experiment_cli(name: str):
    from collapse_hpc import experiments

    return experiments.cli(name)


def default_run_dir(config: str) -> Path:
    return Path("runs") / Path(config).stem


def _warn_disk(store, run, chains) -> None:
    """One warning where the run's estimated disk (submit --dry-run's: the units' files and the report's
    table) is more than its folder's file system has free: a run of many generations would otherwise
    learn it when the disk fills, hours in. Not refused: the estimate is rough, and space can be freed
    while it runs."""
    from collapse_hpc.launch import estimate
    from collapse_hpc.store import space

    est = estimate.estimate(run, chains)
    need = est.disk_gb * 1e9 + estimate.report_disk_bytes(est.report_rows)
    short = space.short_of_room(store.root, need)
    if short:
        logging.getLogger("collapse_hpc").warning(
            "warning: %s: %s (submit --dry-run's estimate of its units and report); it may stop on a full disk "
            f"midway (finished units are kept: free space, {space.AGAIN})", store.root, short)


def resolve(args, executor: str | None = None, profile: str | None = None, problems: list[str] | None = None,
            scontrol=None):
    """Load and validate the config and check each experiment's inputs; writes nothing.

    Returns (store, run); the store's folder may not exist yet. With `problems` (a list), the checks
    of the cluster and of the inputs add their failures to it instead of raising the first. `scontrol`
    (slurm.Scontrol): what the cluster's checks read of it, kept for the caller's later ones."""
    from collapse_hpc import engine, experiments
    from collapse_hpc.launch import choose, estimate
    from collapse_hpc.launch import profile as profmod

    store = _run_store(args)  # a file where the run folder goes: refused before any check

    def check(what, *a):
        try:
            what(*a)
        except UserError as e:
            if problems is None:
                raise
            problems.append(str(e))

    executor = choose(executor, profile)  # --profile without --executor: the profile's back-end
    overrides = list(args.overrides)
    if executor:
        overrides.append(f"executor={executor}")
    if profile:
        overrides.append(f"profile={profile}")
    run = experiments.load_config(args.config, overrides, args.generations)
    # one line before anything is written; the units' memory once the inputs are checked (below)
    engine.check(run, args.config, getattr(args, "force", False), sizes=False)
    check(estimate.check, run, engine.plan(run), args.config, getattr(args, "force", False))
    only = getattr(args, "only", None)
    _warn_disk(store, run, engine.plan(run, only=only))
    if only:
        asked = "collapse-hpc" if args.command in experiments.names() else "--only"  # by hand: `collapse-hpc vae CFG`
        unknown = [o for o in only if o not in run.sections]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], list(run.sections), n=1)
            raise UserError(f"{asked} {unknown[0]}: not a section of {args.config}"
                            + (f" (did you mean {close[0]!r}?)" if close else "")
                            + f"; it has: {', '.join(run.sections)}")
        disabled = [o for o in only if o not in run.enabled()]
        if disabled:  # it would plan nothing, yet make a run folder
            raise UserError(f"{asked} {disabled[0]}: disabled in {args.config} ({disabled[0]}.enabled: false); "
                            f"enable it, e.g. --set {disabled[0]}.enabled=true")
    prof = None
    if run.executor == "slurm":  # a bad profile must fail before the run folder exists
        from collapse_hpc.launch import slurm
        from collapse_hpc.launch.container import check_binds, check_cache_env, resolve_image

        prof, scontrol = profmod.load(run.profile), scontrol or slurm.Scontrol()
        if prof.container.image:  # before the run folder too; the jobs would only fail at start
            def image():
                try:
                    resolve_image(prof.container.image)
                except UserError as e:
                    raise UserError(f"{run.profile}: {e}".replace("container image", "container.image", 1)) from None

            def binds():
                try:
                    missing = check_binds(prof.container)
                except UserError as e:
                    raise UserError(f"{run.profile}: {e}") from None
                for line in missing:  # node-local storage may exist only there: said, not refused
                    logging.getLogger("collapse_hpc").warning("%s: %s", run.profile, line)

            def caches():
                try:
                    check_cache_env(prof.env)
                except UserError as e:
                    raise UserError(f"{run.profile}: {e}") from None
            check(image)
            check(binds)
            check(caches)
        kinds, chains = {"aggregate": 1}, engine.plan(run, only=only)
        for c in chains:
            kinds[c.kind] = max(c.ranks, kinds.get(c.kind, 1))

        def cluster():  # sbatch's own word only where the named checks pass (one line per problem)
            found = slurm.profile_problems(prof, sorted(kinds), scontrol)
            if found and problems is not None:  # the dry run lists every kind's, not only the first
                problems.extend(found)
            elif found:
                raise UserError(found[0])
            else:
                slurm.try_requests(store, run, prof, kinds)
        check(cluster)
    check_inputs(run, args.config, prof, only, problems, args.overrides)
    return store, run


def check_inputs(run, file: str, prof=None, only=None, problems: list[str] | None = None, overrides=()) -> None:
    """What run and config check of a config's inputs before starting: each enabled experiment's (of `only`)
    data sets prepared and models loadable, e.g. an unprepared data set one line now, not a failed job later
    (a model looked for in the HF cache the jobs of `prof`, the profile, use, not this shell's); then the
    units' memory. With `problems` (a list), an experiment's failure is added to it instead of raised. A built-in
    data set not prepared for the jobs of `prof` says to stage it: the command names `file`, the profile and the
    --set `overrides` as given."""
    from collapse_hpc import experiments
    from collapse_hpc.experiments.base import staged_by
    from collapse_hpc.launch import profile as profmod

    # a data set for Slurm jobs is staged (make stage) where the profile's jobs look, not prepared here
    stage = " ".join(["collapse-hpc stage", shlex.quote(str(file)), "--profile", shlex.quote(str(run.profile)),
                      *(f"--set {shlex.quote(o)}" for o in overrides)]) if prof is not None else None
    with profmod.job_environment(prof), staged_by(stage):
        for name in (n for n in run.enabled() if not only or n in only):
            try:
                experiments.get(name).check(run)
            except UserError as e:
                if problems is None:
                    raise UserError(f"{file}: {e}") from None
                problems.append(f"{file}: {e}")
    _check_memory(run, file)


def _check_memory(run, file: str) -> None:
    """A unit run here must fit this machine (else killed, unit after unit); one over what is available
    now is a warning. After the inputs' checks: a misspelt hub model's name may state a size none holds."""
    from collapse_hpc import engine

    largest = engine.check_sizes(run, file, memory=None if run.executor == "slurm" else total_memory(),
                                 gpus_here=bool(gpu_ids()))
    if run.executor != "slurm" and largest and largest > (available_memory() or largest):
        logging.getLogger("collapse_hpc").warning(
            "a unit of this run needs about %.3g GiB of memory; %.3g GiB is available here now: it may be "
            "killed (out of memory) unless other processes free some", largest / 2**30, available_memory() / 2**30)


def _run_store(args):
    """The run folder of args (--run, else runs/<config name>): a path that is a file is refused here,
    not by mkdir's bare 'File exists' once the checks passed."""
    from collapse_hpc.store import RunStore
    from collapse_hpc.store.layout import folder_to_make

    return RunStore(folder_to_make(args.run or default_run_dir(args.config), "--run " if args.run else ""))


def _generations(run, chains) -> str:
    """Per experiment, its chains (or array parts) and their generations: a section's own count
    (gmm's 2050) differs from the run's."""
    from collapse_hpc import experiments

    out = []
    for name in dict.fromkeys(c.experiment for c in chains):
        mine = [c for c in chains if c.experiment == name]
        n, what = (len(mine), "chain") if mine[0].shape == "chain" else (sum(len(c.jobs) for c in mine), "part")
        out.append(f"{name}: {count(n, what)} of {count(experiments.get(name).generations(run), 'generation')}")
    return "; ".join(out)


def note_kept_generations(run, generations: int | None, only: list[str] | None = None) -> None:
    """One line where --generations (the run-level count) leaves an experiment the count its section sets
    (gmm's 2050): the chains it was asked to lengthen otherwise keep theirs unsaid."""
    from collapse_hpc import experiments

    kept = {name: n for name in run.enabled() if not only or name in only
            if (n := experiments.get(name).generations(run)) != generations} if generations is not None else {}
    if not kept:
        return
    (first, n), *others = kept.items()
    keeps = ", ".join([f"{first} keeps {n}", *(f"{name} {m}" for name, m in others)])
    print(f"note: --generations {generations} is the run's count; a section's own generations win over it: {keeps} "
          f"(--set {first}.generations={generations} sets {'one' if others else 'it'})", file=sys.stderr)


def cmd_run(args, executor=None) -> int:
    from collapse_hpc import engine, launch
    from collapse_hpc.launch.slurm import Scontrol
    from collapse_hpc.store.layout import made_folder
    from collapse_hpc.store.lock import ORPHANS_STOP_S

    if not getattr(args, "profile", None):  # where it goes to Slurm: picked as submit picks
        args.profile = _slurm_profile(args, executor or args.executor)
    scontrol = Scontrol()  # read where the run goes to Slurm, once for its checks and its submission
    with logs.held() as notes:  # a refused run prints its error line alone; the checks' notes come once it goes ahead
        store, run = resolve(args, executor or args.executor, getattr(args, "profile", None), scontrol=scontrol)
        pending = _submit_pending(store, run, args.only, scontrol) if run.executor == "slurm" else None
    log = logging.getLogger("collapse_hpc")
    # locked before open and the log file: a refused launcher writes nothing into the run folder;
    # submit holds it too (slurm's submit takes the same lock again inside); a run again right after its
    # launcher was killed waits for that one's unit processes, which stop on their own
    made_folder(store.root, "--run " if args.run else "")  # a path mkdir refuses (/proc/x): which folder, and why
    with store.lock(log=log.warning, wait_s=ORPHANS_STOP_S, command=args.command, launcher=run.executor != "slurm"):
        if run.executor != "slurm":
            launch.refuse_if_submitted(store)
        chains = engine.open_run(store, run, only=args.only, force=getattr(args, "force", False))
        logs.setup(args.verbose, store.root)
        notes.say()
        note_kept_generations(run, args.generations, args.only)
        jobs = sum(len(c.jobs) for c in chains)
        log.info("run %s: %s, %s, executor %s (%s)", store.root, count(len(chains), "chain"), count(jobs, "unit"),
                 run.executor, _generations(run, chains))
        if run.executor == "slurm":
            from collapse_hpc.report.aggregate import job as report

            launch.execute(store, run, chains, "slurm", pending=pending, finish=report, config=scontrol.config)
            return 0
        counts = launch.execute(store, run, chains, run.executor)
    failed = counts.get("failed") or []
    logs.last_word(f"{store.root}: {count(counts.get('done', 0), 'unit')} done, {counts.get('skipped', 0)} already "
               "finished" + (f", {len(failed)} failed" if failed else "") + f" ({jobs} planned)")
    return 1 if failed else 0


def _submit_pending(store, run, only, scontrol) -> set[str]:
    """The units a submit starts (slurm.pending_units), worked out once, before the run folder is written,
    and the jobs they make weighed against the cluster's job count and the user's limits on jobs queued at
    once (a refusal leaves nothing behind); `scontrol` (slurm.Scontrol): the cluster as the checks read it."""
    from collapse_hpc import engine
    from collapse_hpc.launch import profile as profiles
    from collapse_hpc.launch import slurm

    chains = engine.plan(run, only=only)
    pending = slurm.pending_units(store, run, chains)
    slurm.check_queue(store, chains, pending, profiles.load(run.profile), scontrol)
    return pending


def cmd_submit(args) -> int:
    args.profile = _submission_profile(args)
    args.executor = "slurm"
    if args.dry_run:
        return dry_run(args)
    return cmd_run(args, executor="slurm")


def _submission_profile(args, configured=None) -> str:
    """The profile a submission uses: --profile, an existing run's own, the config's (`configured`: the config
    as _configured loaded it already), else the site's."""
    from collapse_hpc.launch.profile import pick

    return pick(args.profile or _runs_own_profile(args), (configured or _configured(args)).profile, args.config)


def _configured(args):
    """The config as its file and --set say, its executor slurm without a profile: key too (the command
    picks the profile as submit does: _submission_profile; a config without one reaches pick's message)."""
    from collapse_hpc import experiments

    return experiments.load_config(args.config, args.overrides, getattr(args, "generations", None),
                                   needs_profile=False)


def _slurm_profile(args, executor: str | None) -> str | None:
    """Where a run of args without --profile goes to Slurm (--executor slurm, or the config's own executor), the
    profile it submits with (_submission_profile); else None. The config is loaded once."""
    if executor == "slurm":
        return _submission_profile(args)
    if executor is not None:
        return None
    configured = _configured(args)
    return _submission_profile(args, configured) if configured.executor == "slurm" else None


def _runs_own_profile(args) -> str | None:
    """Where --profile is not given, an existing run's own: its last submit's (jobs.json). A
    resubmission keeps the partitions, account and image of the jobs it joins; the config's
    profile: or slurm/site.yaml may have changed since."""
    from collapse_hpc.launch import records
    from collapse_hpc.store import RunStore

    store = RunStore(args.run or default_run_dir(args.config))
    book = records.load(store)  # {"units": {}} where there is none
    own = book.get("profile") if book.get("executor") == "slurm" and not book.get("corrupt") else None
    if not isinstance(own, str) or not own:
        return None
    if not Path(own).is_file():
        raise UserError(f"{store.root}: its jobs were submitted with the profile {own}, not found from here; "
                        f"submit from where you submitted it, or give --profile P")
    print(f"{store.root}: submitting with the profile of its earlier submit, {own} (--profile P for another)")
    return own


def dry_run(args) -> int:
    """The plan, its sbatch scripts, the estimate and every failing check; writes nothing."""
    from collapse_hpc import engine
    from collapse_hpc.launch import dryrun
    from collapse_hpc.launch import profile as profmod
    from collapse_hpc.launch.slurm import Scontrol

    problems: list[str] = []
    scontrol = Scontrol()
    store, run = resolve(args, "slurm", args.profile, problems, scontrol)
    note_kept_generations(run, args.generations, args.only)
    return dryrun.show(store, run, engine.plan(run, only=args.only), profmod.load(run.profile), problems, scontrol)


def cmd_stage(args) -> int:
    """Prepare every data set and fetch every hub model of the config, where the profile's jobs look (a config run
    here without a profile: where its units look, this shell's HF cache)."""
    from collapse_hpc import data, experiments
    from collapse_hpc.launch import profile as profmod
    from collapse_hpc.launch.container import check_cache_env
    from collapse_hpc.launch.slurm import Scontrol
    from collapse_hpc.launch.stage import fetch_models

    run = _configured(args)
    profile = _stage_profile(args, run)
    prof = profmod.load(profile) if profile else None
    try:  # before anything is fetched: it would go into a folder named after the variable
        check_cache_env(prof.env) if prof else None
    except UserError as e:
        raise UserError(f"{profile}: {e}") from None
    data_dir, known = Path(run.data_dir), data.preparers()
    names = list(dict.fromkeys(n for e in run.enabled() for n in experiments.get(e).data_sets(run)))
    for name in names:
        if name in known:
            data.prepare(name, data_dir)
        elif not (data_dir / name / "card.json").is_file():  # the user's own files: only they can prepare it
            raise UserError(f"{args.config}: data set {name!r} is not built in: prepare it from your files "
                            f"(collapse-hpc data prepare {name} --from PATH --data-dir {data_dir})")
    models = {t: experiments.get(e).hub_files for e in run.enabled() for t in experiments.get(e).hub_models(run)}
    tags = list(models)
    for line in fetch_models(models, prof):
        print(line)
    args.run, args.generations, args.only = None, None, None
    if profile:
        scontrol = Scontrol()
        store, run = resolve(args, "slurm", profile, scontrol=scontrol)  # submit's checks, in the jobs' environment
        _submit_pending(store, run, None, scontrol)
    else:
        store, run = resolve(args, run.executor)  # run's checks, here
    built = list(dict.fromkeys(m for e in run.enabled() for m in experiments.get(e).built_models(run)))
    print(f"staged for {profile or f'a run here (executor {run.executor})'}: data sets {', '.join(names) or 'none'} "
          f"in {data_dir}; {_staged_models(tags, built)}; {'submit' if profile else 'run'}'s checks pass")
    return 0


def _stage_profile(args, run) -> str | None:
    """The profile whose jobs stage fills the caches for: the one a submission picks (--profile, the config's,
    the site's); None for a config run here (executor local or debug) where none is found: stage then prepares
    for that run, in this shell's caches. A config of executor slurm without one is refused (pick's line)."""
    from collapse_hpc.launch import profile as profmod

    if run.executor != "slurm" and not (args.profile or run.profile or profmod.SITE.is_file()):
        return None
    return profmod.pick(args.profile, run.profile, args.config)


def _staged_models(fetched: list[str], built: list[str]) -> str:
    """What stage says of the config's models: those it fetched, and those each job builds itself (nothing to
    stage: the tiny model)."""
    said = [f"models {', '.join(fetched)}"] if fetched else []
    said += [f"model{'s' if len(built) > 1 else ''}: built in the job ({', '.join(built)})"] if built else []
    return "; ".join(said) or "models none"


def cmd_cancel(args) -> int:
    from collapse_hpc.launch import local, records, slurm
    from collapse_hpc.store.layout import existing_run

    store = existing_run(args.run)
    # no executor recorded: a run made in-process (--executor debug), whose process holds the run's lock as a
    # local launcher does; a corrupt book tells no back-end: a launcher of this host stops as any, else Slurm's
    # cancel says how to find the jobs
    book = records.load(store)
    on_host = local.runs_here(store) if book.get("corrupt") else book.get("executor") in (None, "local")
    return (local.cancel_run if on_host else slurm.cancel_run)(store)


def cmd_profile(args) -> int:
    from collapse_hpc.launch.site import init

    return init(Path(args.out), force=args.force)


def cmd_status(args) -> int:
    from collapse_hpc.launch.listing import show

    return show(args.run, as_json=args.json, every=args.every)


def cmd_verify(args) -> int:
    from collapse_hpc.verify import verify_run

    return verify_run(args.run)


def cmd_aggregate(args) -> int:
    from collapse_hpc.report import aggregate

    home = aggregate.home(args.runs, args.out)
    if home is not None:  # its lines go into the run's log too, as run's do
        logs.setup(args.verbose, home)
    return aggregate.main(args.runs, out=args.out, replicates=args.replicates)


def cmd_data(args) -> int:
    from collapse_hpc import data

    if args.data_command == "list":
        return data.list_prepared(Path(args.data_dir))
    return data.prepare(args.name, Path(args.data_dir), source=args.source, force=args.force)


def cmd_experiment(args) -> int:
    hook = _experiment_cli(args.command)
    if hook and args.config is None:  # its own command line (lm: the reference implementation's flags)
        from collapse_hpc.launch.peers import launched_ranks

        with launched_ranks():  # on several ranks: a peer's end or hang said in one line
            return hook.main(args)
    return run_by_hand(args)


def run_by_hand(args) -> int:
    """One experiment of a config (or one variant, one unit of it) in this process."""
    from collapse_hpc import engine, launch
    from collapse_hpc.launch.debug import execute

    _refuse_own_flags(args)
    args.only = [args.command]
    if args.generations is not None:  # this experiment's chains, also where its section sets its own count
        args.overrides = [*args.overrides, f"{args.command}.generations={args.generations}"]
    with logs.held() as notes:  # said once the unit goes ahead, as by cmd_run
        store, run = resolve(args, "debug")
    chains = engine.plan(run, only=args.only)
    if args.variant is not None:  # --variant '' names no variant: refused, not taken as all of them
        names = [c.variant.name for c in chains]
        chains = [c for c in chains if c.variant.name == args.variant]
        if not chains:  # the names come from the plan: the user cannot know them before
            raise UserError(f"--variant {args.variant}: no such variant of {args.command} in {args.config} "
                            f"(it has: {', '.join(dict.fromkeys(names))})")
    if args.unit is not None:
        for c in chains:
            c.jobs = [j for j in c.jobs if j.index == args.unit]
        if not any(c.jobs for c in chains):
            raise UserError(f"--unit {args.unit}: no such unit of {args.command} "
                            f"(units are numbered from 0 to {_last_unit(run, args)})")
        _refuse_unbuilt(store, chains, args.unit)
    # before open: a refused launcher must not rewrite config.yaml
    with store.lock(command=args.command, launcher=True):
        launch.refuse_if_submitted(store)
        engine.open_run(store, _where_it_runs(args, run))
        logs.setup(args.verbose, store.root)
        notes.say()
        counts = execute(store, run, chains, deep=args.unit is not None)  # a unit named: checked in full
    logs.last_word(f"{store.root}: {count(counts['done'], 'unit')} done, {counts['skipped']} already finished")
    return 0


def _where_it_runs(args, run):
    """The run as a unit run by hand saves it: the unit runs in this process, but the run keeps its config's own
    executor, so the run's own command (collapse-hpc run RUN/config.yaml, as status and verify give it) goes on
    where the run ran, not in one process (a Slurm run's units on the login node)."""
    return dataclasses.replace(run, executor=_configured(args).executor)


def _refuse_own_flags(args) -> None:
    """Flags of an experiment's own command line (lm: the reference's, its `own_flags`) have no effect on a
    config's run: refused, not ignored while the config's chain runs."""
    own = getattr(args, "own_flags", {})
    given = [flag for dest, (flag, default) in own.items() if getattr(args, dest) != default]
    if given:
        raise UserError(f"{given[0]}: a flag of collapse-hpc {args.command} without a CONFIG; with {args.config}, "
                        f"set the config's value instead (--set {args.command}.KEY=VALUE)")


def _refuse_unbuilt(store, chains, index: int) -> None:
    """A chain's generation by hand needs the one before it finished: said before the run folder is made."""
    from collapse_hpc.store import read_manifest

    for c in (c for c in chains if c.shape == "chain" and index > 0):
        before = store.unit_dir(c.experiment, c.variant.name, "chain", index - 1)
        if read_manifest(before) is None:
            raise UserError(f"--unit {index}: {c.experiment}/{c.variant.name} generation {index - 1} is not "
                            f"finished ({before}); run the units before it first (--unit {index - 1}), or "
                            f"the chain without --unit")


def _last_unit(run, args) -> int:
    from collapse_hpc import engine

    chains = [c for c in engine.plan(run, only=args.only) if not args.variant or c.variant.name == args.variant]
    return max((len(c.jobs) for c in chains), default=0) - 1


def cmd_config(args) -> int:
    from collapse_hpc import config as cfgmod
    from collapse_hpc import engine, experiments

    if not args.config and (args.overrides or args.generations is not None):  # else silently the key list
        flag = "--set" if args.overrides else "--generations"
        raise UserError(f"config: {flag} resolves a config: give its file (collapse-hpc config CONFIG {flag} …); "
                        f"without one, config lists every key")
    if args.config:
        from collapse_hpc.launch import profile

        run = _configured(args)
        if run.executor == "slurm" and not run.profile:  # the profile a submission of it picks (site.yaml)
            from collapse_hpc.launch.profile import pick

            run.profile = cfgmod.anchored(pick(None, None, args.config))
        engine.check(run, args.config, force=True, sizes=False)  # only shown: a large plan is no risk here
        print(f"# config_hash: {run.hash()}")
        print(cfgmod.dump(run), end="", flush=True)
        note_kept_generations(run, args.generations)
        # after it is shown: the paper's config on a machine without its data still shows what it resolves to
        check_inputs(run, args.config, profile.load(run.profile) if run.executor == "slurm" else None,
                     overrides=args.overrides)
    else:
        print(cfgmod.describe(experiments.sections()), end="")
    return 0


COMMANDS = {"config": cmd_config, "run": cmd_run, "submit": cmd_submit, "status": cmd_status, "verify": cmd_verify,
            "aggregate": cmd_aggregate, "data": cmd_data, "profile": cmd_profile, "stage": cmd_stage,
            "cancel": cmd_cancel}


def _os_message(e: OSError) -> str:
    from collapse_hpc.store import space

    if space.refused(e):  # a full disk, a quota, a read-only mount: which file system, and what to do
        return space.explain(e)
    where = e.filename if e.filename is not None else ""
    if e.filename2 is not None:
        where += f" -> {e.filename2}"
    what = e.strerror or str(e)
    return f"{where}: {what}" if where else what


def _interrupted(args) -> str:
    """The line a Ctrl-C ends with: what the command leaves and how to go on from it."""
    command = getattr(args, "command", None)
    if command == "aggregate":  # report.aggregate writes the page last, each file whole
        return "interrupted: the report has no page (index.html is written last); the same command writes it whole"
    if command == "run" or (command not in COMMANDS and getattr(args, "config", None)):  # units by hand too
        return ("interrupted: finished units are kept (each once its manifest is written); the same command "
                "goes on from them")
    return "interrupted"


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = _parser().parse_args(argv)
        logs.setup(args.verbose)
        with term_as_interrupt():
            return COMMANDS.get(args.command, cmd_experiment)(args)
    except UserError as e:
        print(f"error: {one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except MemoryError:  # a size no check foresaw: one line, not a traceback
        print(f"error: out of memory in collapse-hpc {' '.join((argv or sys.argv[1:])[:1])}; lower the sizes "
              f"involved (data rows, replicates, samples, generations)", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `status RUN | head`: the reader left; quiet, as other tools are
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush would raise
        return 141
    except OSError as e:  # a user path that cannot be made or read (--run /proc/x, a full disk)
        print(f"error: {one_line(_os_message(e))}", file=sys.stderr)
        return UserError.exit_code
    except Exception as e:  # a library's own error type for a full disk (Rust's safetensors, tokenizers)
        from collapse_hpc.store import space

        said = space.named(e, None)
        if said is e:
            raise
        print(f"error: {one_line(_os_message(said))}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print(_interrupted(args), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
