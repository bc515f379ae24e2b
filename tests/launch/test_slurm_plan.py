"""The Slurm back-end's planning, against fake sbatch/squeue/scancel on PATH (as submitit's own
tests fake sbatch): which jobs are submitted, with which dependencies and resources, and what
a second submission leaves alone. The real-cluster tests are in tests/slurm/."""
import dataclasses
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from collapse_hpc import engine
from collapse_hpc.launch import profile as profile_mod
from collapse_hpc.store import RunStore
from tests.helpers import flip, hashed
from tests.launch.helpers import REPO, collapse, jobs, write_config

FAKES = {
    # --test-only: sbatch's check of a job (refused with test-only.txt's words; where test-only-if.txt is
    # there, only a job whose script holds its line), nothing queued or counted
    "sbatch": '[ "$1" = --test-only ] && { cp "$2" "$FAKE_SLURM/test-only-$(basename "$2")"; '
              '[ -f "$FAKE_SLURM/test-only.txt" ] && { [ ! -f "$FAKE_SLURM/test-only-if.txt" ] || '
              'grep -qF -f "$FAKE_SLURM/test-only-if.txt" "$2"; } && '
              '{ cat "$FAKE_SLURM/test-only.txt" >&2; exit 1; }; '
              'echo "sbatch: Job 1 to start at 2026-01-01T00:00:00" >&2; exit 0; }\n'
              'n=$(( $(cat "$FAKE_SLURM/counter" 2>/dev/null || echo 100) + 1 )); echo $n > "$FAKE_SLURM/counter"\n'
              'cp "${@: -1}" "$FAKE_SLURM/job_$n.sh"; echo "Submitted batch job $n"\n',
    # squeue.txt's lines as they are, but a job's (id|state|elapsed[|reason[|start time]]) completed with the user
    # and the name sbatch queued it with, as squeue -o "%i|%T|%M|%r|%u|%S|%j" writes them
    "squeue": 'while IFS= read -r line; do IFS="|" read -r -a f <<< "$line"; id=${f[0]}\n'
              '  if [[ ! "$id" =~ ^[0-9]+(_[0-9]+)?$ ]] || [ ${#f[@]} -ge 7 ]; then echo "$line"; continue; fi\n'
              '  name=$(sed -n "s/^#SBATCH --job-name=//p" "$FAKE_SLURM/job_${id%%_*}.sh" 2>/dev/null)\n'
              '  echo "$id|${f[1]}|${f[2]}|${f[3]}|$USER|${f[4]:-N/A}|${name//\\\'/}"\n'
              'done < "$FAKE_SLURM/squeue.txt" 2>/dev/null; true\n',
    "scancel": 'echo "$@" >> "$FAKE_SLURM/scancel.txt"\n',
    # sacct.txt's lines (status.SACCT's fields, or the first few: JobID|State|Elapsed…), or nothing; where
    # sacct-fails.txt is there, its lines on stderr, exit 1
    "sacct": '[ -f "$FAKE_SLURM/sacct-fails.txt" ] && { cat "$FAKE_SLURM/sacct-fails.txt" >&2; exit 1; }\n'
             'cat "$FAKE_SLURM/sacct.txt" 2>/dev/null; true\n',
    "srun": "true\n",  # submitit only checks that it exists
    "sinfo": 'cat "$FAKE_SLURM/sinfo.txt" 2>/dev/null || '
             'printf "%s\\n" "debug*|1:00:00|(null)" "gpu|2-00:00:00|gpu:h100:4" "gpu|2-00:00:00|gpu:h100:4"\n',
    # the partitions of the dev cluster and the example profile, or partitions.txt; nodes: nodes.txt
    "scontrol": '[[ "$*" == *"show config"* ]] && { cat "$FAKE_SLURM/config.txt" 2>/dev/null; exit 0; }\n'
                '[[ "$*" == *"show node"* ]] && { cat "$FAKE_SLURM/nodes.txt" 2>/dev/null; exit 0; }\n'
                '[[ "$*" == *"show partition"* ]] || exit 1\n'
                'cat "$FAKE_SLURM/partitions.txt" 2>/dev/null || printf "%s\\n" '
                '"PartitionName=debug Default=YES MaxTime=UNLIMITED" "PartitionName=gpu Default=NO MaxTime=2-00:00:00" '
                '"PartitionName=cpu Default=NO MaxTime=UNLIMITED"\n',
}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    d = tmp_path / "fake"
    (d / "bin").mkdir(parents=True)
    for name, body in FAKES.items():
        p = d / "bin" / name
        # hangs(): a slurmctld that does not answer (exec: the timeout's kill reaches the sleep, holding the pipes)
        hang = f'[ -f "$FAKE_SLURM/hang-{name}" ] && exec sleep 5\n'
        p.write_text(f'#!/bin/bash\necho "{name} $*" >> "$FAKE_SLURM/calls.txt"\n' + hang + body)  # calls(): what ran
        p.chmod(0o755)
    monkeypatch.setenv("FAKE_SLURM", str(d))
    monkeypatch.setenv("PATH", f"{d / 'bin'}:{__import__('os').environ['PATH']}")
    return d


def hangs(d: Path, monkeypatch, *commands: str) -> None:
    """The fake `commands` wait (5 s) past the time Slurm commands wait on slurmctld, shortened to 0.2 s."""
    from collapse_hpc.launch import slurm

    monkeypatch.setattr(slurm, "SLURMCTLD_WAIT", 0.2)
    for name in commands:
        (d / f"hang-{name}").touch()


def calls(d: Path, command: str) -> int:
    """How many times the fake Slurm commands ran `command` (its name and first words)."""
    path = d / "calls.txt"
    return sum(line.startswith(command) for line in path.read_text().splitlines()) if path.exists() else 0


def scripts(d: Path) -> dict[int, str]:
    return {int(p.stem.split("_")[1]): p.read_text() for p in sorted(d.glob("job_*.sh"))}


def flag(script: str, name: str) -> str | None:
    m = re.search(rf"^#SBATCH --{name}=(.*)$", script, re.M)
    return m.group(1).strip("'") if m else None


def submit(cfg, run, profile=REPO / "slurm" / "local.yaml"):
    rc, out, err = collapse("submit", cfg, "--run", run, "--profile", profile)
    assert rc == 0, err
    return out


def test_chains_arrays_and_aggregate(tmp_path, fake_slurm):
    cfg = write_config(tmp_path, generations=3, seeds=[0, 1], ltchain={}, ltarray={"parts": 2, "seeds": [0]})
    out = submit(cfg, tmp_path / "run")
    s = scripts(fake_slurm)
    assert len(s) == 3 + 3 + 1 + 1  # two chains of 3, one array, the aggregation
    book = jobs(tmp_path / "run")["units"]
    for seed in (0, 1):
        ids = [book[f"ltchain/replace-p0-s{seed}/gen_{g:03d}"]["job_id"] for g in range(3)]
        assert flag(s[int(ids[0])], "dependency") is None
        for g in (1, 2):
            script = s[int(ids[g])]
            assert flag(script, "dependency") == f"afterok:{ids[g - 1]}"
            assert flag(script, "kill-on-invalid-dep") == "yes"
            assert f"afterok:{ids[g - 1]}" in flag(script, "comment")
        assert " -> ".join(ids) in out
    parts = [book[f"ltarray/replace-p0-s0/part_{p:03d}"]["job_id"] for p in range(2)]
    array_id = parts[0].split("_")[0]
    assert parts == [f"{array_id}_0", f"{array_id}_1"]
    assert flag(s[int(array_id)], "array") == "0-1%2"  # one sbatch for every part
    agg = jobs(tmp_path / "run")["aggregate"]
    waits = flag(s[int(agg["job_id"])], "dependency")
    assert waits.startswith("afterany:") and set(waits[9:].split(":")) == \
        {j for j in {*(e["job_id"].split("_")[0] for e in book.values())}}
    for script in s.values():  # every job: the dev partition, USR2 before the limit, env from the profile
        assert flag(script, "partition") == "debug" and flag(script, "signal") == "USR2@30"
        assert 'export HF_HUB_OFFLINE="1"' in script


def test_an_array_over_max_array_size_is_queued_as_several(tmp_path, fake_slurm):
    """sbatch refuses an array of more than MaxArraySize tasks ("Invalid job array specification"): the
    chains were queued, the arrays and the aggregation job not. A lone last task is a plain job."""
    (fake_slurm / "config.txt").write_text("MaxArraySize = 2\n")
    cfg = write_config(tmp_path, generations=1, ltarray={"parts": 5})
    out = submit(cfg, tmp_path / "run")
    s = scripts(fake_slurm)
    book = jobs(tmp_path / "run")
    parts = [book["units"][f"ltarray/replace-p0-s0/part_{p:03d}"]["job_id"] for p in range(5)]
    a, b, c = (parts[0].split("_")[0], parts[2].split("_")[0], parts[4])
    assert parts == [f"{a}_0", f"{a}_1", f"{b}_0", f"{b}_1", c]
    assert flag(s[int(a)], "array") == flag(s[int(b)], "array") == "0-1%2" and flag(s[int(c)], "array") is None
    assert f"{a}_[0-1] + {b}_[0-1] + {c}\n" in out
    agg = book["aggregate"]["job_id"]
    assert flag(s[int(agg)], "dependency") == f"afterany:{a}:{b}:{c}"


def test_a_submit_past_max_job_count_is_one_line_before_anything_is_queued(tmp_path, fake_slurm):
    """MaxJobCount was read by the dry run only: a real submit queued jobs until sbatch refused (or kept
    retrying), chains half-queued. Now the jobs it would queue, with the user's own already queued,
    are weighed against it first."""
    (fake_slurm / "config.txt").write_text("MaxJobCount = 3\nMaxArraySize = 1001\n")
    (fake_slurm / "squeue.txt").write_text("77|RUNNING|1:00|None\n")  # a job of another run of the user's
    cfg = write_config(tmp_path, generations=2, ltchain={})  # two generations and the report: 3 jobs
    run = tmp_path / "run"
    rc, out, err = collapse("submit", cfg, "--run", run, "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("error: the cluster holds at most 3 jobs at once (MaxJobCount, scontrol show config) "
                          "and this submit would pass it (3 jobs + 1 of yours queued > MaxJobCount 3); nothing "
                          "was queued"), err
    assert not run.exists() and scripts(fake_slurm) == {}
    (fake_slurm / "squeue.txt").write_text("")
    submit(cfg, run)  # within it
    assert len(scripts(fake_slurm)) == 3


def test_a_submit_past_the_users_submit_limit_leaves_nothing_half_queued(tmp_path, fake_slurm):
    """sbatch refuses a job past the user's MaxSubmitJobs with a line that names no limit ("Job violates
    accounting/QOS policy"), and the jobs queued before it stayed: a chain cut short. They are cancelled
    now, the book is as it was, and the line says which limit and what to do."""
    sbatch = fake_slurm / "bin" / "sbatch"
    sbatch.write_text(sbatch.read_text().replace(
        'cp "${@: -1}"', '[ $n = 103 ] && { printf "%s\\n" "sbatch: error: QOSMaxSubmitJobPerUserLimit" '
        '"sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, '
        'user\'s size and/or time limits)" >&2; exit 1; }; cp "${@: -1}"'))
    cfg = write_config(tmp_path, generations=3, ltchain={})
    run = tmp_path / "run"
    rc, out, err = collapse("submit", cfg, "--run", run, "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 2 and "Traceback" not in err and err.count("error:") == 1, err
    err = err[err.index("error:"):]
    assert err.startswith("error: sbatch refused ltchain/replace-p0-s0/gen_002: a limit on your jobs queued at "
                          "once is reached (QOSMaxSubmitJobPerUserLimit: sacctmgr show assoc user=$USER "
                          "format=MaxSubmitJobs, or the QOS's MaxSubmitPU); the 2 jobs this submit had queued are "
                          "cancelled, so nothing of this submit is queued"), err
    assert (fake_slurm / "scancel.txt").read_text().split() == ["101", "102"]
    assert jobs(run)["units"] == {}
    rc, out, _ = collapse("status", run)
    assert rc == 0 and "PENDING" not in out and "CANCELLED" not in out, out


def test_a_resubmission_refused_for_the_submit_limit_keeps_the_queued_report_job(tmp_path, fake_slurm):
    """A resubmission that queues a generation more replaces the queued aggregation job: it was cancelled
    before its successor was queued, so a refusal of that one left the run's queued jobs without a report."""
    cfg = write_config(tmp_path, generations=2, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    book = jobs(run)
    queued = [*(e["job_id"] for e in book["units"].values()), book["aggregate"]["job_id"]]
    (fake_slurm / "squeue.txt").write_text("".join(f"{j}|PENDING|0:00|Dependency\n" for j in queued))
    sbatch = fake_slurm / "bin" / "sbatch"
    sbatch.write_text(sbatch.read_text().replace(
        'cp "${@: -1}"',
        '[ $n = 105 ] && { echo "sbatch: error: AssocMaxSubmitJobLimit" >&2; exit 1; }; cp "${@: -1}"'))
    rc, _, err = collapse("submit", cfg, "--run", run, "--generations", "3", "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 2 and "sbatch refused the aggregation job: a limit on your jobs queued at once is reached " \
                       "(AssocMaxSubmitJobLimit" in err and "the 1 job this submit had queued" in err, err
    assert (fake_slurm / "scancel.txt").read_text().split() == ["104"]  # the new generation's, not the report's
    assert jobs(run)["aggregate"]["job_id"] == queued[-1] and jobs(run)["units"] == book["units"]


def test_one_submit_reads_the_config_once_and_the_queue_once_before_it_locks_the_run(tmp_path, fake_slurm):
    """`scontrol show config` ran three times a submit (MaxJobCount, the submit limit's AccountingStorageEnforce
    and ClusterName, the submission's MaxArraySize), and squeue once for each of the two checks before the
    submission's own: read once now, and the queue once for both checks (again under the run's lock, where
    another submit of the run may have queued jobs since). `scontrol show partition` ran twice (the profile's
    partitions, the partitions' QOS of the submit limit): once now."""
    (fake_slurm / "config.txt").write_text("MaxJobCount = 100\nMaxArraySize = 1001\nClusterName = dev\n"
                                           "AccountingStorageEnforce = associations,limits,qos\n")
    _sacctmgr(fake_slurm, "collapse||10||normal")  # the user's association under collapse: 10 jobs at once
    cfg = write_config(tmp_path, generations=2, ltchain={}, ltarray={"parts": 2})
    submit(cfg, tmp_path / "run")
    assert len(scripts(fake_slurm)) == 4  # two generations, the array, the report
    assert calls(fake_slurm, "scontrol show config") == 1 and calls(fake_slurm, "scontrol -a -o show partition") == 1
    # the checks', the submit limit's (%u|%a|%q|%P); the submission's reads the run's jobs by id, and it has none yet
    assert calls(fake_slurm, "squeue") == 2
    assert calls(fake_slurm, "sacctmgr") == 4
    (fake_slurm / "calls.txt").unlink()
    (fake_slurm / "config.txt").write_text("MaxJobCount = 100\nClusterName = dev\n"
                                           "AccountingStorageEnforce = associations,limits,qos\n")
    _sacctmgr(fake_slurm, "collapse||5||normal")
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run", "--generations", "4", "--profile",
                          REPO / "slurm" / "local.yaml")
    assert rc == 2 and "limited to 5 (MaxSubmitJobs of your association with account collapse" in err, err
    # the user's queue, the run's own jobs by id (whoever queued them), the submit limit's
    assert calls(fake_slurm, "scontrol show config") == 1 and calls(fake_slurm, "squeue") == 3
    assert calls(fake_slurm, "scontrol -a -o show partition") == 1
    (fake_slurm / "calls.txt").unlink()  # the dry run reads them once too
    rc, out, err = collapse("submit", cfg, "--run", tmp_path / "run", "--generations", "4", "--profile",
                            REPO / "slurm" / "local.yaml", "--dry-run")
    assert rc == 2 and "limits on jobs queued at once (sacctmgr): OVER" in out, err
    assert calls(fake_slurm, "scontrol show config") == 1 and calls(fake_slurm, "scontrol -a -o show partition") == 1


def _sacctmgr(fake_slurm, assoc: str = "collapse||||normal", qos: str = "normal||||\\n") -> None:
    """A fake sacctmgr: the user's association `assoc` (Account|Partition|MaxSubmit|GrpSubmit|DefaultQOS), the
    account collapse under root, the QOS lines `qos` (Name|MaxSubmitPU|MaxSubmitPA|GrpSubmit|Flags), and
    collapse the user's default account."""
    sacctmgr = fake_slurm / "bin" / "sacctmgr"
    sacctmgr.write_text('#!/bin/bash\necho "sacctmgr $*" >> "$FAKE_SLURM/calls.txt"\ncase "$*" in\n'
                        f'  *"user= "*) echo "collapse|root|" ;;\n  *"show assoc"*) echo "{assoc}" ;;\n'
                        f'  *"show qos"*) printf "{qos}" ;;\n  *"show user"*) echo collapse ;;\nesac\n')
    sacctmgr.chmod(0o755)


@pytest.mark.parametrize("reader, fails, why", [
    ("sacctmgr", 'echo "sacctmgr: error: Problem talking to the database: Connection refused" >&2; exit 1',
     "sacctmgr show assoc failed: sacctmgr: error: Problem talking to the database: Connection refused"),
    ("sacctmgr", "exec sleep 5", "sacctmgr show assoc: no answer within 0.5 s"),
    ("squeue", 'echo "squeue: error: slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1',
     "squeue failed: squeue: error: slurm_load_jobs error: Unable to contact slurm controller"),
    ("squeue", "exec sleep 5", "squeue: no answer within 1 s")],
    ids=["sacctmgr fails", "sacctmgr no answer", "squeue fails", "squeue no answer"])
def test_limits_sacctmgr_or_squeue_cannot_read_are_said_unchecked_and_the_submit_goes_on(
        tmp_path, fake_slurm, monkeypatch, reader, fails, why):
    """Where sacctmgr failed or did not answer (slurmdbd down), the limits on jobs queued at once went unchecked
    without a word, and a hung sacctmgr was waited on once for each of its four reads. Where the squeue of the
    jobs they count (%u|%a|%q|%P) did, it counted none without a word, and passed a submit that sbatch refuses
    part-way."""
    from collapse_hpc.launch import quota, slurm

    monkeypatch.setattr(quota, "SACCTMGR_WAIT", 0.5)
    monkeypatch.setattr(slurm, "SLURMCTLD_WAIT", 1)
    (fake_slurm / "config.txt").write_text("ClusterName = dev\nAccountingStorageEnforce = associations,limits,qos\n")
    _sacctmgr(fake_slurm, "collapse||10||normal")
    # squeue's earlier reads (the user's jobs, the run's) answer; after the fake's line of calls.txt
    only = "" if reader == "sacctmgr" else '[[ "$*" == *"%u|%a|%q|%P"* ]] && '
    fake = (fake_slurm / "bin" / reader).read_text().split("\n")
    (fake_slurm / "bin" / reader).write_text("\n".join(fake[:2] + [f"{only}{{ {fails}; }}"] + fake[2:]))
    cfg = write_config(tmp_path, generations=1, ltchain={})
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 0 and len(scripts(fake_slurm)) == 2, err
    assert [line for line in err.splitlines() if line.startswith("warning:")] == [
        f"warning: the limits on jobs queued at once are not checked ({why}): sbatch checks them itself; "
        f"past one it refuses a job part-way through the submit, and this submit's jobs are cancelled"], err
    assert calls(fake_slurm, "sacctmgr") == (1 if reader == "sacctmgr" else 4)


def test_a_job_of_several_partitions_meets_the_limits_it_meets_in_each(tmp_path, fake_slurm):
    """partition: debug,gpu, both of QOS partq (MaxSubmitPU 100), which stands in for the jobs' QOS normal's 2:
    the check took no partition's QOS for a job of several and refused 4 jobs by normal's 2, which sbatch
    queues. Each partition's limits are met now, and those all of them share are weighed."""
    (fake_slurm / "config.txt").write_text("ClusterName = dev\nAccountingStorageEnforce = associations,limits,qos\n")
    (fake_slurm / "partitions.txt").write_text("PartitionName=debug Default=YES MaxTime=UNLIMITED QoS=partq\n"
                                               "PartitionName=gpu Default=NO MaxTime=UNLIMITED QoS=partq\n")
    (tmp_path / "both.yaml").write_text("name: both\npartition: debug,gpu\n")
    _sacctmgr(fake_slurm, qos="normal|2|||\\npartq|100|||\\n")
    cfg = write_config(tmp_path, generations=3, ltchain={})
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", tmp_path / "both.yaml")
    assert rc == 0, err
    assert {flag(s, "partition") for s in scripts(fake_slurm).values()} == {"debug,gpu"}
    _sacctmgr(fake_slurm, qos="normal|2|||\\npartq|3|||\\n")  # partq's own limit holds in either partition
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run2", "--profile", tmp_path / "both.yaml")
    assert rc == 2 and "your jobs under QOS partq queued at once are limited to 3 (MaxSubmitPU of QOS partq, " \
                       "partition debug's" in err, err


def test_where_squeue_hides_other_users_jobs_a_refusal_says_it_counted_those_it_shows(tmp_path, fake_slurm):
    """PrivateData=jobs: squeue shows a user their own jobs only, and the refusal of a limit on everyone's
    jobs said '2 queued now, so 3 more fit' as if it had counted them all."""
    (fake_slurm / "config.txt").write_text("ClusterName = dev\nAccountingStorageEnforce = limits\nPrivateData = jobs\n")
    _sacctmgr(fake_slurm, qos="normal|||5|\\n")  # GrpSubmit: 5 jobs of every user at once
    (fake_slurm / "squeue.txt").write_text("bo|collapse|normal|debug\nbo|collapse|normal|debug\n")  # %u|%a|%q|%P
    cfg = write_config(tmp_path, generations=3, ltchain={})
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 2 and "and the jobs of every user queued at once are limited to 5 (GrpSubmit of QOS normal: " \
                       "sacctmgr show qos normal format=Name,GrpSubmit), 2 queued now that squeue shows you " \
                       "(PrivateData=jobs hides other users' jobs), so at most 3 more fit" in err, err


def test_local_run_refused_while_slurm_jobs_of_the_run_live(tmp_path, fake_slurm):
    """One owner per run: while submitted jobs are queued or running, a local (or debug, or by
    hand) run of the same run folder is one error line and changes nothing; once they are gone
    from the queue it runs."""
    cfg = write_config(tmp_path, generations=2, ltchain={}, ltarray={"parts": 2})
    run = tmp_path / "run"
    submit(cfg, run)
    book = (run / "jobs.json").read_bytes()
    array = next(e["job_id"] for k, e in jobs(run)["units"].items() if k.startswith("ltarray"))
    (fake_slurm / "squeue.txt").write_text(f"{array.split('_')[0]}_1|RUNNING|0:05\n")  # one task of the array
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    for argv in (("run", cfg, "--executor", "local"), ("run", cfg, "--executor", "debug"), ("ltchain", cfg)):
        rc, out, err = collapse(*argv, "--run", run)
        assert rc == 2 and err.count("error:") == 1 and "queued or running" in err, (argv, err)
        assert (run / "jobs.json").read_bytes() == book
        assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    (fake_slurm / "squeue.txt").write_text("")
    rc, out, err = collapse("run", cfg, "--run", run, "--executor", "debug")
    assert rc == 0, err


def test_resubmission_skips_queued_and_done(tmp_path, fake_slurm):
    cfg = write_config(tmp_path, generations=3, ltchain={}, ltarray={"parts": 2})
    run = tmp_path / "run"
    submit(cfg, run)
    first = jobs(run)
    ids = [e["job_id"] for e in first["units"].values()] + [first["aggregate"]["job_id"]]
    (fake_slurm / "squeue.txt").write_text("".join(f"{i}|PENDING|0:00\n" for i in ids))
    n = len(scripts(fake_slurm))
    out = submit(cfg, run)
    assert len(scripts(fake_slurm)) == n and "nothing to submit" in out
    assert jobs(run)["units"] == first["units"]

    # gen_000's job vanished (failed) while gen_001/gen_002 still wait on it: a new chain
    # replaces them (the stale ones are cancelled: never two chains for one variant)
    chain = [first["units"][f"ltchain/replace-p0-s0/gen_{g:03d}"]["job_id"] for g in range(3)]
    queued = [i for i in ids if i != chain[0]]
    (fake_slurm / "squeue.txt").write_text("".join(f"{i}|PENDING|0:00\n" for i in queued))
    submit(cfg, run)
    again = jobs(run)
    new = [again["units"][f"ltchain/replace-p0-s0/gen_{g:03d}"]["job_id"] for g in range(3)]
    assert not set(new) & set(chain)
    assert again["units"]["ltchain/replace-p0-s0/gen_000"]["history"] == [chain[0]]
    cancelled = (fake_slurm / "scancel.txt").read_text().split()
    assert set(chain[1:]) <= set(cancelled) and first["aggregate"]["job_id"] in cancelled
    assert again["units"]["ltarray/replace-p0-s0/part_000"] == first["units"]["ltarray/replace-p0-s0/part_000"]


def test_finished_generations_are_not_submitted(tmp_path, fake_slurm):
    cfg = write_config(tmp_path, generations=3, ltchain={})
    run = tmp_path / "run"
    rc, _, err = collapse("run", cfg, "--run", run, "--executor", "debug", "--generations", "1")
    assert rc == 0, err
    submit(cfg, run)
    book = jobs(run)["units"]
    assert "ltchain/replace-p0-s0/gen_000" not in book
    s = scripts(fake_slurm)
    assert flag(s[int(book["ltchain/replace-p0-s0/gen_001"]["job_id"])], "dependency") is None
    assert len(s) == 3  # gen_001, gen_002, aggregate


def test_a_resubmit_that_changes_the_generation_count_says_so_and_how_to_keep_it(tmp_path, fake_slurm):
    """make submit GENERATIONS=2, cancel, then make submit without GENERATIONS=: every chain was lengthened
    to the config's 3 without a word."""
    import shlex

    cfg, run = write_config(tmp_path, generations=3, ltchain={}), tmp_path / "a run"
    first = ("submit", cfg, "--run", run, "--profile", REPO / "slurm" / "local.yaml")
    rc, _, err = collapse(*first, "--generations", "2")
    assert rc == 0 and "generations changed" not in err, err
    (fake_slurm / "squeue.txt").write_text("")  # cancelled: nothing queued
    rc, _, err = collapse(*first)
    assert rc == 0 and len(jobs(run)["units"]) == 3, err
    note = [line for line in err.splitlines() if line.startswith("note: ")]
    assert len(note) == 1 and f"{run}: generations changed since its last plan (ltchain 2 -> 3)" in note[0], err
    assert shlex.split(note[0].split("to keep the run's own: ")[1]) == [
        "collapse-hpc", "submit", str(run / "config.yaml"), "--run", str(run)]
    rc, _, err = collapse(*first)  # the same again: no note
    assert rc == 0 and "note: " not in err, err


def test_a_generation_that_finished_after_submit_looked_is_not_queued_again(tmp_path, fake_slurm):
    """As an array's part: a chain's generation whose job ended between submit working out what to start and its
    read of the queue was queued again, and its successor, queued and by then running, cancelled as stale: the
    chain redone from there. Only a generation that finished since is left; one redone for a mismatch stays
    queued with those after it (test_a_resubmit_hashes_the_generations_the_next_one_reads_once)."""
    import copy

    from collapse_hpc import engine, experiments, launch
    from collapse_hpc.launch import debug
    from collapse_hpc.launch.slurm import pending_units
    from collapse_hpc.store import RunStore

    config = experiments.config_from_dict({"name": "t", "generations": 3, "seeds": [0], "executor": "slurm",
                                           "profile": str(REPO / "slurm" / "local.yaml"), "toy": {}})
    store = RunStore(tmp_path / "run")
    (chain,) = engine.open_run(store, config)
    launch.execute(store, config, [chain], "slurm", pending=pending_units(store, config, [chain]))
    first = {label: e["job_id"] for label, e in jobs(store.root)["units"].items()}
    gen0, gen1, gen2 = (first[j.label] for j in chain.jobs)
    (fake_slurm / "squeue.txt").write_text(f"{gen0}|RUNNING|0:05\n{gen1}|PENDING|0:00\n{gen2}|PENDING|0:00\n")
    pending = pending_units(store, config, [chain])
    assert len(pending) == 3
    ended = copy.copy(chain)
    ended.jobs = chain.jobs[:1]
    debug.execute(store, config, [ended])  # generation 0's job ends meanwhile; generation 1's starts
    (fake_slurm / "squeue.txt").write_text(f"{gen1}|RUNNING|0:01\n{gen2}|PENDING|0:00\n")
    sbatched = calls(fake_slurm, "sbatch")
    launch.execute(store, config, [chain], "slurm", pending=pending)
    assert {label: e["job_id"] for label, e in jobs(store.root)["units"].items()} == first
    assert calls(fake_slurm, "sbatch") == sbatched and not (fake_slurm / "scancel.txt").exists()


def test_a_resubmit_hashes_the_generations_the_next_one_reads_once(tmp_path, fake_slurm, monkeypatch):
    """submit weighed its jobs against MaxJobCount (engine.pending of every chain) and then its submission
    asked engine.pending again: the finished generations the first pending one reads were hashed in full
    twice (a resubmitted paper run: each lm chain's last model, ~0.5 GB, twice). Worked out once now, and
    a generation changed since the last submit is still redone."""
    from collections import Counter

    (fake_slurm / "config.txt").write_text("MaxJobCount = 10000\nMaxArraySize = 1001\n")
    cfg = write_config(tmp_path, generations=4, ltchain={})
    run = tmp_path / "run"
    rc, _, err = collapse("run", cfg, "--run", run, "--executor", "debug", "--generations", "3")
    assert rc == 0, err
    seen = hashed(monkeypatch)
    submit(cfg, run)
    files = Counter(Path(p) for p in seen)
    assert {p.parent.name for p in files} == {"gen_000", "gen_002"}  # what generation 3 reads
    assert set(files.values()) == {1}, files
    assert sorted(jobs(run)["units"]) == ["ltchain/replace-p0-s0/gen_003"]

    flip(next(p for p in files if p.parent.name == "gen_002"), keep_time=True)  # same size: only a hash sees it
    seen.clear()
    submit(cfg, run)
    assert set(Counter(Path(p) for p in seen).values()) == {1}
    book = jobs(run)["units"]
    redo, after = (int(book[f"ltchain/replace-p0-s0/gen_00{g}"]["job_id"]) for g in (2, 3))
    assert flag(scripts(fake_slurm)[after], "dependency") == f"afterok:{redo}"


def test_a_chain_is_resubmitted_from_its_first_unfinished_generation(tmp_path, fake_slurm):
    """Generation 0 lost a file: it is redone, and generation 1 (built on the old generation 0,
    done and bound until then) is queued after it, not left for a second submission."""
    import json

    cfg = write_config(tmp_path, generations=2, ltchain={})
    run = tmp_path / "run"
    rc, _, err = collapse("run", cfg, "--run", run, "--executor", "debug")
    assert rc == 0, err
    g0 = run / "ltchain" / "replace-p0-s0" / "gen_000"
    (g0 / next(iter(json.loads((g0 / "manifest.json").read_text())["files"]))).unlink()
    submit(cfg, run)
    book = jobs(run)["units"]
    first, second = (int(book[f"ltchain/replace-p0-s0/gen_00{g}"]["job_id"]) for g in (0, 1))
    s = scripts(fake_slurm)
    assert flag(s[first], "dependency") is None and flag(s[second], "dependency") == f"afterok:{first}"


def test_multi_gpu_profile_and_container(tmp_path, fake_slurm):
    (tmp_path / "img.sif").write_text("not a real image")
    (tmp_path / "scratch").mkdir()
    prof = tmp_path / "gpus.yaml"
    prof.write_text(f"""
name: gpus
account: proj
array_parallelism: 2
jobs:
  gpu: {{nodes: 2, gpus_per_node: 4, cpus_per_task: 8, mem: 200G, sbatch: {{constraint: h100}}}}
container: {{image: {tmp_path / 'img.sif'}, binds: [{tmp_path / 'scratch'}]}}
setup: [module load apptainer]
""")
    cfg = write_config(tmp_path, generations=1, ltchain={}, ltarray={"parts": 3})
    submit(cfg, tmp_path / "run", prof)
    book = jobs(tmp_path / "run")["units"]
    array = scripts(fake_slurm)[int(book["ltarray/replace-p0-s0/part_000"]["job_id"].split("_")[0])]
    assert flag(array, "array") == "0-2%2" and flag(array, "gpus-per-node") is None
    script = scripts(fake_slurm)[int(book["ltchain/replace-p0-s0/gen_000"]["job_id"])]
    assert flag(script, "nodes") == "2" and flag(script, "gpus-per-node") == "4"
    assert flag(script, "ntasks-per-node") == "4"  # one rank per GPU
    assert flag(script, "cpus-per-task") == "8" and flag(script, "mem") == "200G"
    assert flag(script, "constraint") == "h100" and flag(script, "account") == "proj"
    assert flag(script, "wckey") is None  # not submitit's default 'submitit': clusters that check wckeys refuse it
    assert "CUDA_VISIBLE_DEVICES" not in script  # DeepSpeed picks the GPU by LOCAL_RANK
    assert "module load apptainer" in script
    command = script.strip().splitlines()[-1]
    assert "apptainer exec --nv" in command and str(tmp_path / "img.sif") in command
    assert f"{tmp_path}/scratch" in command
    # a rank that exits non-zero ends the others, also on the other node (the peer watch sees its host's)
    assert command.startswith("srun ") and " --kill-on-bad-exit=1 " in command
    assert "--kill-on-bad-exit" not in array  # one task: nothing else to end


def test_a_chains_ranks_come_from_the_section():
    from collapse_hpc import experiments

    run = experiments.config_from_dict({"ltchain": {"ranks": 3}, "ltarray": {}})
    # entry-point experiments come in name order (experiments.registry), so key by experiment
    assert {c.experiment: (c.kind, c.ranks) for c in engine.plan(run)} == {"ltchain": ("gpu", 3), "ltarray": ("cpu", 1)}


def test_sbatch_refusal_is_one_line_and_keeps_what_was_queued(tmp_path, fake_slurm):
    cfg = write_config(tmp_path, generations=2, ltchain={})
    run = tmp_path / "run"
    sbatch = fake_slurm / "bin" / "sbatch"
    real = sbatch.read_text()
    # the second sbatch is refused, as a cluster refuses an unknown partition
    sbatch.write_text(real.replace('cp "${@: -1}"', '[ $n = 102 ] && { echo "sbatch: error: invalid partition '
                                   'specified: nope" >&2; exit 1; }; cp "${@: -1}"'))
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 2
    assert "error: sbatch refused ltchain/replace-p0-s0/gen_001: invalid partition specified: nope" in err
    assert "Traceback" not in err
    assert not [ln for ln in err.splitlines() if ln.startswith("sbatch: ")], err  # submitit's echo of sbatch's stderr
    assert jobs(run)["units"]["ltchain/replace-p0-s0/gen_000"]["job_id"] == "101"  # recorded: not lost


@pytest.mark.parametrize("profile, named", [
    ("qos: normal\njobs:\n  cpu:\n    qos: nosuch\n", "jobs.cpu.qos is 'nosuch'"),
    ("account: collapse\nqos: nosuch\n", "qos is 'nosuch', for every kind"),
])
def test_a_qos_sbatch_refuses_is_named_by_the_key_that_set_it(tmp_path, fake_slurm, profile, named):
    """A QOS set for one kind read '(jobs.cpu sets this kind's requests)', and one for every kind beside an
    account '(account, qos apply to every kind)': the line did not say which key to fix."""
    (fake_slurm / "test-only.txt").write_text("sbatch: error: Batch job submission failed: Invalid qos "
                                              "specification\n")
    (fake_slurm / "test-only-if.txt").write_text("--qos=nosuch\n")  # what sbatch refuses: the others pass
    prof = tmp_path / "p.yaml"
    prof.write_text(profile)
    cfg = write_config(tmp_path, generations=1, ltarray={"parts": 1})
    rc, out, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof)
    assert rc == 2 and err.strip().endswith(f": Invalid qos specification ({named})"), err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_what_sbatch_refuses_is_one_line_before_anything_is_written(tmp_path, fake_slurm):
    """An account the user may not charge (or a --mem sbatch cannot read, an unknown extra): sbatch
    refused the first job with the run folder written, or a later kind's job after the chains were queued."""
    (fake_slurm / "test-only.txt").write_text("sbatch: error: Batch job submission failed: Invalid account or "
                                              "account/partition combination specified\n")
    prof = tmp_path / "p.yaml"
    prof.write_text("account: nobody\n")
    cfg = write_config(tmp_path, generations=2, ltchain={}, ltarray={"parts": 1})
    rc, out, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof)
    assert rc == 2 and "Traceback" not in err, err
    assert err.strip() == "error: profile p: sbatch refuses its aggregate jobs: " \
                          "Invalid account or account/partition combination specified (account is 'nobody', for " \
                          "every kind)"
    assert not (tmp_path / "run").exists() and scripts(fake_slurm) == {}
    tried = [p.read_text() for p in fake_slurm.glob("test-only-*")]
    assert len(tried) == 1 and "#SBATCH --account=nobody" in tried[0]
    rc, out, _ = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof, "--dry-run")
    assert rc == 2 and "FAILED: profile p: sbatch refuses its aggregate jobs: Invalid account" in out
    # no node to run it now (drained, down, reserved): sbatch queues it to wait, so no refusal
    (fake_slurm / "test-only.txt").write_text("allocation failure: Requested node configuration is not available\n")
    submit(cfg, tmp_path / "run", prof)  # then every kind is tried (gpu, cpu, aggregate), and queued
    assert len(list(fake_slurm.glob("test-only-*"))) == 2 + 3  # refused twice (submit, dry run), then 3 kinds
    assert len(scripts(fake_slurm)) == 4  # ltchain's 2 generations, the ltarray array, the aggregation


def test_a_bind_of_a_variable_not_set_is_one_line_and_a_missing_source_a_warning(tmp_path, fake_slurm, monkeypatch,
                                                                                 caplog):
    """Binds are expanded where submit runs: a variable not set there reached apptainer as written, and
    every job failed at its start. A source missing on the login node may be node-local storage of
    the compute nodes: said, not refused."""
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    (tmp_path / "img.sif").write_text("not a real image")
    (tmp_path / "there").mkdir()
    cfg = write_config(tmp_path, generations=1, ltarray={"parts": 1})
    prof = tmp_path / "p.yaml"
    prof.write_text(f"container: {{image: {tmp_path / 'img.sif'}, binds: [{tmp_path / 'there'}, '$NOT_SET_HERE/x']}}\n")
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof)
    assert rc == 2 and err.startswith(f"error: {prof}: container.binds: $NOT_SET_HERE/x: $NOT_SET_HERE/x names a "
                                      f"variable not set here") and err.count("\n") == 1
    assert not (tmp_path / "run").exists() and scripts(fake_slurm) == {}
    rc, out, _ = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof, "--dry-run")
    assert rc == 2 and f"FAILED: {prof}: container.binds: $NOT_SET_HERE/x" in out
    prof.write_text(f"container: {{image: {tmp_path / 'img.sif'}, binds: ['/node/local/scratch:/scratch']}}\n")
    with caplog.at_level("WARNING", logger="collapse_hpc"):
        rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof)
    assert rc == 0, err
    assert "/node/local/scratch does not exist on this host; every job fails at its start unless it exists on " \
           "the compute nodes" in caplog.text


def test_profile_chooses_the_executor(tmp_path, fake_slurm):
    cfg = write_config(tmp_path, generations=1, ltchain={})
    # --profile alone: a cluster profile submits (before, this silently ran locally)
    rc, out, err = collapse("run", cfg, "--run", tmp_path / "a", "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 0, err
    assert jobs(tmp_path / "a")["executor"] == "slurm" and len(scripts(fake_slurm)) == 2  # gen_000, aggregate
    # --executor still wins over the profile
    rc, _, err = collapse("run", cfg, "--run", tmp_path / "b", "--profile", REPO / "slurm" / "local.yaml",
                          "--executor", "debug")
    assert rc == 0, err
    assert (tmp_path / "b/ltchain/replace-p0-s0/gen_000/manifest.json").is_file() and len(scripts(fake_slurm)) == 2
    # a profile may name another back-end
    prof = tmp_path / "here.yaml"
    prof.write_text("name: here\nexecutor: debug\n")
    rc, _, err = collapse("run", cfg, "--run", tmp_path / "c", "--profile", prof)
    assert rc == 0, err
    assert (tmp_path / "c/ltchain/replace-p0-s0/gen_000/manifest.json").is_file() and len(scripts(fake_slurm)) == 2
    prof.write_text("executor: cloud\n")
    rc, _, err = collapse("run", cfg, "--run", tmp_path / "d", "--profile", prof)
    assert rc == 2 and "executor" in err and "cloud" in err and not (tmp_path / "d").exists()


def test_done_run_without_report_submits_the_aggregation_again(tmp_path, fake_slurm):
    cfg = write_config(tmp_path, generations=2, ltchain={}, ltarray={"parts": 2})
    run = tmp_path / "run"
    rc, _, err = collapse("run", cfg, "--run", run, "--executor", "debug")
    assert rc == 0, err
    out = submit(cfg, run)  # every unit done, no report (the aggregation job failed)
    s = scripts(fake_slurm)
    agg = jobs(run)["aggregate"]
    assert list(s) == [int(agg["job_id"])] and jobs(run)["units"] == {}
    assert flag(s[int(agg["job_id"])], "dependency") is None and agg["dependency"] is None  # runs at once
    assert f"{agg['job_id']} (report missing)" in out and "nothing to submit" not in out

    (fake_slurm / "squeue.txt").write_text(f"{agg['job_id']}|PENDING|0:00\n")  # queued: left alone
    out = submit(cfg, run)
    assert len(scripts(fake_slurm)) == 1 and "nothing to submit" in out

    (fake_slurm / "squeue.txt").write_text("")
    index = run / "report" / "index.html"
    index.parent.mkdir()
    index.write_text("<html></html>")  # the report exists and is newer than every unit
    out = submit(cfg, run)
    assert len(scripts(fake_slurm)) == 1 and "nothing to submit" in out

    os.utime(index, (1, 1))  # older than the results: made before the last units finished
    submit(cfg, run)
    again = jobs(run)["aggregate"]
    assert len(scripts(fake_slurm)) == 2 and again["history"] == [agg["job_id"]]


def test_gmm_parts_are_one_array_and_vae_jobs_single_gpu(tmp_path, fake_slurm):
    cfg = write_config(tmp_path, generations=2, seeds=[0, 1],
                       gmm={"replicates": 4, "chunk_replicates": 2, "generations": 3, "samples": 20},
                       vae={"epochs": 1, "eval_samples": 100})
    # the example cluster's resources, without its container (whose image is not here)
    example = yaml.safe_load((REPO / "slurm" / "example-cluster.yaml").read_text())
    example.pop("container")
    prof = tmp_path / "example.yaml"
    prof.write_text(yaml.safe_dump(example))
    submit(cfg, tmp_path / "run", prof)
    s, book = scripts(fake_slurm), jobs(tmp_path / "run")["units"]

    gmm = [e["job_id"] for label, e in book.items() if label.startswith("gmm/")]
    assert len(gmm) == 2 * 2  # two variants (seeds) x two parts of two replicates
    arrays = {j.split("_")[0] for j in gmm}
    assert len(arrays) == 1  # every part of every variant: ONE sbatch --array
    array = s[int(arrays.pop())]
    assert flag(array, "array") == "0-3%4" and flag(array, "gpus-per-node") is None
    assert flag(array, "partition") == "cpu" and flag(array, "cpus-per-task") == "4"

    for seed in (0, 1):
        ids = [book[f"vae/replace-p0-s{seed}/gen_{g:03d}"]["job_id"] for g in range(2)]
        assert flag(s[int(ids[1])], "dependency") == f"afterok:{ids[0]}"
        for jid in ids:  # the gpu1 kind: one GPU, one rank
            assert book[f"vae/replace-p0-s{seed}/gen_{ids.index(jid):03d}"]["kind"] == "gpu1"
            assert flag(s[int(jid)], "gpus-per-node") == "1" and flag(s[int(jid)], "ntasks-per-node") == "1"
            assert flag(s[int(jid)], "nodes") == "1" and flag(s[int(jid)], "mem") == "32G"
            assert flag(s[int(jid)], "partition") == "gpu" and "--array" not in s[int(jid)]
    assert len(s) == 1 + 2 * 2 + 1  # the gmm array, two vae chains of two, the aggregation


def test_corrupt_jobs_json_refuses_to_submit(tmp_path, fake_slurm):
    """Without jobs.json it is unknown what is queued: submitting could start a second chain."""
    cfg = write_config(tmp_path, generations=2, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    (run / "jobs.json").write_text("[1, 2]")
    before = len(scripts(fake_slurm))
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 2 and "jobs.json is corrupt" in err and "Traceback" not in err
    assert len(scripts(fake_slurm)) == before and (run / "jobs.json").read_text() == "[1, 2]"


@pytest.mark.parametrize("partitions, profile_text, message", [
    ("PartitionName=debug Default=YES MaxTime=UNLIMITED", "partition: nosuch\n",
     "partition: no partition 'nosuch' on this cluster (it has: debug)"),
    ("PartitionName=debug Default=YES MaxTime=UNLIMITED", "jobs: {cpu: {partition: cpu}}\n",
     "jobs.cpu.partition: no partition 'cpu'"),
    ("PartitionName=short Default=YES MaxTime=30:00", "jobs: {gpu: {time_min: 60}}\n",
     "jobs.gpu.time_min: 60 is over the time limit of partition short (30 min)"),
])
def test_partition_problems_are_one_line_before_anything_is_written(tmp_path, fake_slurm, partitions,
                                                                    profile_text, message):
    """sbatch would refuse only after earlier jobs were queued, or queue a too-long job for ever."""
    (fake_slurm / "partitions.txt").write_text(partitions + "\n")
    profile = {"jobs": {kind: {"time_min": 20} for kind in ("gpu", "gpu1", "cpu", "aggregate")}}
    for key, value in yaml.safe_load(profile_text).items():
        if key == "jobs":
            for kind, res in value.items():
                profile["jobs"][kind].update(res)
        else:
            profile[key] = value
    prof = tmp_path / "p.yaml"
    prof.write_text(yaml.safe_dump(profile))
    cfg = write_config(tmp_path, generations=2, ltchain={}, ltarray={"parts": 1})
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof)
    assert rc == 2 and message in err and "Traceback" not in err, err
    assert not [ln for ln in err.splitlines() if ln.startswith("sbatch: ")], err  # submitit's echo of sbatch's stderr
    assert not (tmp_path / "run").exists() and scripts(fake_slurm) == {}


NODES = ("NodeName=cn1 CPUTot=8 RealMemory=21694 Gres=(null) Partitions=debug,cpu State=IDLE\n"
         "NodeName=g1 CPUTot=32 RealMemory=515000 Gres=gpu:h100:4(S:0-1) Partitions=gpu State=IDLE\n")


@pytest.mark.parametrize("jobs_text, message", [
    ("{gpu: {partition: debug, gpus_per_node: 0, mem: 64G}}",
     "jobs.gpu.mem: 64G is more than any node of partition debug has (21694M)"),
    ("{gpu: {partition: gpu, gpus_per_node: 8}}", "jobs.gpu.gpus_per_node: 8 is more than any node of partition gpu "
                                                  "has (4 GPUs)"),
    ("{gpu: {partition: debug, gpus_per_node: 1}}", "jobs.gpu.gpus_per_node: 1 is more than any node of partition "
                                                    "debug has (0 GPUs)"),
    ("{cpu: {cpus_per_task: 16}}", "jobs.cpu.cpus_per_task: 16 is more than any node of partition cpu has (8 CPUs)"),
    ("{gpu: {partition: gpu, gpus_per_node: 4, cpus_per_task: 16}}",
     "jobs.gpu.cpus_per_task: 64 (16 x 4 tasks) is more than any node of partition gpu has (32 CPUs)"),
])
def test_a_job_no_node_fits_is_one_line_before_anything_is_queued(tmp_path, fake_slurm, jobs_text, message):
    """sbatch refuses a job that no node of its partition fits ('Requested node configuration is not
    available'): on the dev cluster the starter profile's 64G LM job was refused with the run folder
    written; with a big enough first kind, the chains would be queued and the aggregation refused."""
    (fake_slurm / "nodes.txt").write_text(NODES)
    profile = {"partition": "cpu", "jobs": {"gpu": {"partition": "gpu", "gpus_per_node": 1},
                                            "gpu1": {"partition": "gpu", "gpus_per_node": 1}}}
    for kind, res in yaml.safe_load(jobs_text).items():
        profile["jobs"].setdefault(kind, {}).update(res)
    prof = tmp_path / "p.yaml"
    prof.write_text(yaml.safe_dump(profile))
    cfg = write_config(tmp_path, generations=2, ltchain={}, ltarray={"parts": 1})
    rc, out, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof)
    assert rc == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists() and scripts(fake_slurm) == {}
    rc, out, _ = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof, "--dry-run")
    assert rc == 2 and f"FAILED: profile p: {message}" in out


@pytest.mark.parametrize("extra, message", [
    ("{jobs: {gpu: {sbatch: {gres: 'gpu:h1000:1'}}}}",
     "jobs.gpu.sbatch.gres: gpu:h1000:1: no node of partition gpu offers gres gpu:h1000 (they offer: gpu:h100)"),
    ("{jobs: {gpu: {sbatch: {gres: 'gpu:h100:8'}}}}",
     "jobs.gpu.sbatch.gres: gpu:h100:8: no node of partition gpu has 8 gpu:h100 per node (at most 4)"),
    ("{jobs: {cpu: {sbatch: {gres: 'gpu:1'}}}}",
     "jobs.cpu.sbatch.gres: gpu:1: no node of partition cpu offers gres gpu (they offer: none)"),
    ("{sbatch: {gpus-per-node: 'a100:1'}}",
     "sbatch.gpus-per-node: a100:1: no node of partition cpu offers gres gpu:a100 (they offer: none)"),
])
def test_a_gres_no_node_offers_is_one_line_before_anything_is_queued(tmp_path, fake_slurm, extra, message):
    """sbatch --test-only answers a gres no node has as it answers drained nodes ('Requested node
    configuration is not available'), which submit lets through: the jobs were queued to wait for ever."""
    (fake_slurm / "nodes.txt").write_text(NODES)
    (fake_slurm / "test-only.txt").write_text("allocation failure: Requested node configuration is not available\n")
    profile = {"partition": "cpu", "jobs": {"gpu": {"partition": "gpu", "gpus_per_node": 1},
                                            "gpu1": {"partition": "gpu", "gpus_per_node": 1}}}
    extra = yaml.safe_load(extra)
    for kind, res in extra.pop("jobs", {}).items():
        profile["jobs"].setdefault(kind, {}).update(res)
    profile.update(extra)
    prof = tmp_path / "p.yaml"
    prof.write_text(yaml.safe_dump(profile))
    cfg = write_config(tmp_path, generations=2, ltchain={}, ltarray={"parts": 1})
    rc, out, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof)
    assert rc == 2 and err.startswith(f"error: profile p: {message}") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists() and scripts(fake_slurm) == {}


def test_a_gres_a_drained_node_offers_is_let_through(tmp_path, fake_slurm):
    (fake_slurm / "nodes.txt").write_text(NODES.replace("State=IDLE", "State=IDLE+DRAIN"))
    (fake_slurm / "test-only.txt").write_text("allocation failure: Requested node configuration is not available\n")
    prof = tmp_path / "p.yaml"
    prof.write_text(yaml.safe_dump({"partition": "cpu", "jobs": {"gpu": {"partition": "gpu", "sbatch": {
        "gres": "gpu:h100:2"}, "gpus_per_node": 0}}}))
    cfg = write_config(tmp_path, generations=1, ltchain={})
    submit(cfg, tmp_path / "run", prof)
    script = scripts(fake_slurm)[int(jobs(tmp_path / "run")["units"]["ltchain/replace-p0-s0/gen_000"]["job_id"])]
    assert flag(script, "gres") == "gpu:h100:2"


def test_gres_requests_and_offers_read_as_slurm_writes_them():
    from collapse_hpc.launch.gres import offered, requested

    assert requested("gres", "gpu:h100:2,scratch:10G") == [("gpu", "h100", 2), ("scratch", None, 10 * 1024 ** 3)]
    assert requested("gpus-per-node", "a100:2") == [("gpu", "a100", 2)] and requested("gpus", "3") == [("gpu", None, 3)]
    assert requested("gres", "gpu:h100") == [("gpu", "h100", 1)] and requested("gres", "none") == []
    assert offered("gpu:h100:4(S:0-1),gpu:a100:2,mps:400") == {("gpu", "h100"): 4, ("gpu", "a100"): 2,
                                                                ("gpu", None): 6, ("mps", None): 400}
    assert offered("(null)") == {}


def test_the_starter_profile_fits_the_nodes_sinfo_lists(tmp_path, fake_slurm, monkeypatch):
    """profile init asked 64G for an LM job on a cluster of 21 GiB nodes: sbatch refused the first job."""
    monkeypatch.chdir(tmp_path)
    (fake_slurm / "sinfo.txt").write_text("debug*|infinite|(null)|21694|8\n")
    (fake_slurm / "nodes.txt").write_text(NODES)
    rc, _, err = collapse("profile", "init")
    assert rc == 0, err
    site = profile_mod.load(tmp_path / "slurm" / "site.yaml")
    assert site.jobs.gpu.mem == "21G" and site.jobs.cpu.mem == "8G" and site.jobs.gpu.cpus_per_task == 8
    cfg = write_config(tmp_path, generations=1, ltchain={}, ltarray={"parts": 1})
    rc, out, err = collapse("submit", cfg, "--run", tmp_path / "run", "--dry-run")
    assert rc == 0 and "all passed" in out, out + err


@pytest.mark.parametrize("text, minutes", [
    ("30", 30), ("30:15", 30.25), ("12:30:00", 750), ("1:02:03", 62.05),  # minutes[:seconds]; h:m:s
    ("1-12", 2160), ("2-0", 2880), ("1-12:30", 2190), ("2-00:00:00", 2880), ("0-00:00:30", 0.5),  # days-...
    (" 1-12 ", 2160), ("0:00", 0)])
def test_every_form_of_a_slurm_time_is_read_as_sbatch_reads_it(text, minutes):
    """sbatch --time: minutes, minutes:seconds, hours:minutes:seconds, days-hours, days-hours:minutes,
    days-hours:minutes:seconds. "1-12" is a day and 12 hours (it was read as a day and 12 minutes)."""
    from collapse_hpc.launch.slurm import _minutes

    assert _minutes(text) == pytest.approx(minutes)


@pytest.mark.parametrize("text", ["UNLIMITED", "infinite", "NONE", "", "INVALID", "Partition_Limit", "soon",
                                  "1:02:03:04", "1-2-3", "-5", "1-", "1-:30", "1:", "٣", "+5", "1.5"])
def test_no_limit_and_unknown_slurm_times_are_none(text):
    """No limit, or a form this parser does not know: not refused here (sbatch checks a limit; a status
    shows no elapsed time); four clock fields raised ValueError (a traceback)."""
    from collapse_hpc.launch.slurm import _minutes

    assert _minutes(text) is None


def test_a_days_hours_partition_limit_starts_the_profile_and_checks_it(tmp_path, fake_slurm, monkeypatch):
    """sinfo and scontrol limits of the form days-hours: 0-12 is 12 hours (read as 12 minutes, profile init
    wrote time_min 12 for a 120-minute job and submit refused 60 minutes as over the limit)."""
    from collapse_hpc.errors import UserError
    from collapse_hpc.launch.slurm import check_profile

    monkeypatch.chdir(tmp_path)
    (fake_slurm / "sinfo.txt").write_text("debug*|0-12|(null)|21694|8\n")
    rc, _, err = collapse("profile", "init")
    assert rc == 0, err
    assert profile_mod.load(tmp_path / "slurm" / "site.yaml").jobs.gpu.time_min == 120
    (fake_slurm / "partitions.txt").write_text("PartitionName=debug Default=YES MaxTime=0-12\n")
    prof = tmp_path / "p.yaml"
    prof.write_text("partition: debug\njobs: {cpu: {time_min: 720}}\n")
    check_profile(profile_mod.load(prof), ["cpu"])  # 12 hours exactly: allowed
    prof.write_text("partition: debug\njobs: {cpu: {time_min: 721}}\n")
    with pytest.raises(UserError, match=r"time_min: 721 is over the time limit of partition debug \(720 min\)"):
        check_profile(profile_mod.load(prof), ["cpu"])
    (fake_slurm / "partitions.txt").write_text("PartitionName=debug Default=YES MaxTime=0\n")
    check_profile(profile_mod.load(prof), ["cpu"])  # a zero limit is none, as sbatch --time=0


def test_wckey_and_other_extras_pass_through(tmp_path, fake_slurm):
    prof = tmp_path / "p.yaml"
    prof.write_text("partition: debug\nwckey: collapse\nsbatch: {mail-type: FAIL, qos: low}\n")
    cfg = write_config(tmp_path, generations=1, ltchain={})
    submit(cfg, tmp_path / "run", prof)
    script = scripts(fake_slurm)[int(jobs(tmp_path / "run")["units"]["ltchain/replace-p0-s0/gen_000"]["job_id"])]
    assert flag(script, "wckey") == "collapse" and flag(script, "mail-type") == "FAIL" and flag(script, "qos") == "low"


def test_submit_without_a_profile_refuses_naming_the_three_ways(tmp_path, fake_slurm, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no slurm/site.yaml here
    cfg = write_config(tmp_path, generations=1, ltchain={})
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run")
    assert rc == 2 and not (tmp_path / "run").exists() and not scripts(fake_slurm)
    line = err.strip()
    assert "\n" not in line and "--profile" in line and "profile: P" in line and "slurm/site.yaml" in line
    assert "profile init" in line


def test_a_config_of_its_own_executor_slurm_picks_the_profile_as_submit_does(tmp_path, fake_slurm, monkeypatch):
    """A config saying `executor: slurm` without `profile:` blamed that key in `run CONFIG`, `stage` and `config`
    ('profile: executor slurm needs a cluster profile'), where submit and `run --executor slurm` take
    slurm/site.yaml, or name every way to give one."""
    monkeypatch.chdir(tmp_path)  # no slurm/site.yaml here
    cfg = write_config(tmp_path, generations=1, ltchain={}, executor="slurm")
    said = []
    for argv in (["submit", cfg, "--run", tmp_path / "run"], ["run", cfg, "--run", tmp_path / "run"], ["stage", cfg],
                 ["config", cfg]):
        rc, _, err = collapse(*argv)
        assert rc == 2 and "Traceback" not in err, (argv, err)
        said.append(err)
    assert len(set(said)) == 1 and "no cluster profile: give --profile P" in said[0], said
    assert not (tmp_path / "run").exists() and not scripts(fake_slurm)
    assert collapse("profile", "init")[0] == 0  # slurm/site.yaml
    site = str(tmp_path / "slurm" / "site.yaml")
    rc, out, err = collapse("config", cfg)
    assert rc == 0 and f"profile: {site}" in out.splitlines(), err
    rc, _, err = collapse("run", cfg, "--run", tmp_path / "run")
    assert rc == 0, err
    assert jobs(tmp_path / "run")["executor"] == "slurm" and jobs(tmp_path / "run")["profile"] == site


@pytest.mark.parametrize("flags", [(), ("--executor", "slurm")])
def test_a_run_that_goes_to_slurm_without_profile_reads_its_config_once_to_pick_one(tmp_path, fake_slurm, monkeypatch,
                                                                                    flags):
    """cmd_run loaded the config as its file says twice to pick the profile (whether it goes to Slurm, then its
    profile: key), before the checks load it with that profile."""
    from collapse_hpc import cli

    picks, real = [], cli._configured
    monkeypatch.setattr(cli, "_configured", lambda args: picks.append(args.config) or real(args))
    local = str(REPO / "slurm" / "local.yaml")
    cfg = write_config(tmp_path, generations=1, ltchain={}, executor="slurm", profile=local)
    rc, _, err = collapse("run", cfg, "--run", tmp_path / "run", *flags)
    assert rc == 0 and picks == [str(cfg)], (err, picks)
    assert jobs(tmp_path / "run")["profile"] == local


def test_submit_picks_the_configs_profile_then_the_site_profile(tmp_path, fake_slurm, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = collapse("profile", "init")  # the site profile, from (fake) sinfo
    assert rc == 0, err
    site = profile_mod.load(tmp_path / "slurm" / "site.yaml")
    assert site.partition == "debug" and site.jobs.gpu.partition == "gpu" and site.jobs.gpu.gpus_per_node == 1
    assert site.jobs.cpu.time_min == 60 and site.jobs.gpu.time_min == 120  # within the partitions' limits
    rc, _, err = collapse("profile", "init")
    assert rc == 2 and "exists" in err  # never replaced without --force
    rc, _, err = collapse("profile", "init", "--out", "slurm", "--force")  # a folder, not a file
    assert rc == 2 and err == "error: slurm is a folder: --out names the profile file to write, e.g. slurm/site.yaml\n"
    assert sorted(p.name for p in (tmp_path / "slurm").iterdir()) == ["site.yaml"]
    # the command it says to run next uses the file it wrote: submit never picks --out's by itself, and a config's
    # own profile: (paper.yaml's) comes before the site's
    assert "then: collapse-hpc submit CONFIG --profile slurm/site.yaml --dry-run" in out, out
    rc, out, err = collapse("profile", "init", "--out", "slurm/my cluster.yaml")
    assert rc == 0 and "then: collapse-hpc submit CONFIG --profile 'slurm/my cluster.yaml' --dry-run" in out, out
    (tmp_path / "slurm" / "my cluster.yaml").unlink()
    cfg = write_config(tmp_path, generations=1, ltchain={})
    submit_anywhere = collapse("submit", cfg, "--run", tmp_path / "a")
    assert submit_anywhere[0] == 0, submit_anywhere[2]
    assert jobs(tmp_path / "a")["profile"] == str(tmp_path / "slurm" / "site.yaml")
    (tmp_path / "own.yaml").write_text("name: own\npartition: gpu\n")
    cfg = write_config(tmp_path, "withprofile", generations=1, ltchain={}, profile=str(tmp_path / "own.yaml"))
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "b")
    assert rc == 0, err
    assert jobs(tmp_path / "b")["profile"] == str(tmp_path / "own.yaml")  # the config's, over the site's
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "c", "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 0 and jobs(tmp_path / "c")["profile"] == str(REPO / "slurm" / "local.yaml")  # --profile first


def test_job_names_tell_chain_and_generation_apart_in_8_characters(tmp_path, fake_slurm):
    cfg = write_config(tmp_path, generations=3, seeds=[0, 1], ltchain={}, ltarray={"parts": 2})
    submit(cfg, tmp_path / "run")
    book = jobs(tmp_path / "run")
    names = {label: flag(scripts(fake_slurm)[int(e["job_id"].split("_")[0])], "job-name")
             for label, e in book["units"].items()}
    chain = {label: name for label, name in names.items() if label.startswith("ltchain/")}
    assert len({name[:8] for name in chain.values()}) == len(chain) == 6  # squeue's default width
    assert chain["ltchain/replace-p0-s1/gen_002"].startswith("lt01g002-t:")
    assert all(name.endswith(label) for label, name in chain.items())  # the rest: run and unit
    assert {n[:8] for label, n in names.items() if label.startswith("ltarray/")} == {"lt-array"}
    assert flag(scripts(fake_slurm)[int(book["aggregate"]["job_id"])], "job-name").startswith("report-t")


def test_cancel_cancels_the_runs_queued_and_running_jobs_only(tmp_path, fake_slurm):
    cfg = write_config(tmp_path, generations=2, ltchain={}, ltarray={"parts": 2})
    run = tmp_path / "run"
    submit(cfg, run)
    book = jobs(run)
    chain = [book["units"][f"ltchain/replace-p0-s0/gen_{g:03d}"]["job_id"] for g in range(2)]
    task = book["units"]["ltarray/replace-p0-s0/part_001"]["job_id"]
    # gen_000 has ended; gen_001, one array task and another user's job are still queued
    (fake_slurm / "squeue.txt").write_text(f"{chain[1]}|PENDING|0:00\n{task}|RUNNING|0:10\n999|RUNNING|1:00\n")
    rc, out, err = collapse("cancel", run)
    assert rc == 0, err
    assert (fake_slurm / "scancel.txt").read_text().split() == sorted([chain[1], task])
    assert "cancelled 2 queued or running jobs" in out
    (fake_slurm / "squeue.txt").write_text("999|RUNNING|1:00\n")
    rc, out, _ = collapse("cancel", run)
    assert rc == 0 and "nothing to cancel" in out
    rc, _, err = collapse("cancel", tmp_path / "nowhere")
    assert rc == 2 and "no such run folder" in err


def test_cancel_of_jobs_scancel_refuses_says_so_and_not_of_those_ended_meanwhile(tmp_path, fake_slurm):
    """A group's run folder: scancel refuses a colleague's jobs, and cancel said 'cancelled 6 queued or running
    jobs' of jobs still queued. One that ends between squeue and scancel is no refusal. The squeue that shows
    whose they are named the run's first three live jobs, not those refused: it names every refused one."""
    cfg = write_config(tmp_path, generations=6, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    ids = [jobs(run)["units"][f"ltchain/replace-p0-s0/gen_{g:03d}"]["job_id"] for g in range(6)]
    (fake_slurm / "squeue.txt").write_text("".join(f"{j}|PENDING|0:00\n" for j in ids))
    refused = "".join(f'echo "scancel: error: Kill job error on job id {j}: Access/permission denied" >&2\n'
                      for j in ids[2:])
    (fake_slurm / "bin" / "scancel").write_text(
        f'#!/bin/bash\necho "scancel: error: Kill job error on job id {ids[0]}: Job/step already completing or '
        f'completed" >&2\nif [ -f "$FAKE_SLURM/refuse" ]; then\n{refused}fi\nexit 1\n')
    rc, out, err = collapse("cancel", run)
    assert rc == 0 and "cancelled 6 queued or running jobs" in out, err
    (fake_slurm / "refuse").touch()
    rc, out, err = collapse("cancel", run)
    assert rc == 2 and err == (f"error: {run}: scancel refused 4 jobs of its 6 queued or running ({' '.join(ids[2:])}: "
                               f"Access/permission denied); jobs another user queued are theirs to cancel (squeue -r "
                               f"-j {','.join(ids[2:])} -o %i,%u); 2 other jobs cancelled\n"), err


def test_cancel_names_an_arrays_refused_tasks_by_the_array(tmp_path, fake_slurm):
    """A colleague's array of many parts: the squeue that shows whose the refused jobs are wrote out every task
    (squeue -j 123_0,123_1,… as long as the array). It names the array once, squeue -r lists its tasks (squeue
    reads Slurm's 123_[0-5] as task 0 alone); a chain's jobs stay as they are."""
    cfg = write_config(tmp_path, generations=1, ltchain={}, ltarray={"parts": 6})
    run = tmp_path / "run"
    submit(cfg, run)
    units = jobs(run)["units"]
    gen0 = units["ltchain/replace-p0-s0/gen_000"]["job_id"]
    tasks = [units[f"ltarray/replace-p0-s0/part_{p:03d}"]["job_id"] for p in range(6)]
    array = tasks[0].split("_")[0]
    (fake_slurm / "squeue.txt").write_text("".join(f"{j}|PENDING|0:00\n" for j in [gen0, *tasks]))
    refused = "".join(f'echo "scancel: error: Kill job error on job id {j}: Access/permission denied" >&2\n'
                      for j in [gen0, *tasks])
    (fake_slurm / "bin" / "scancel").write_text(f"#!/bin/bash\n{refused}exit 1\n")
    rc, _, err = collapse("cancel", run)
    ids = ",".join(sorted([gen0, array], key=int))
    assert rc == 2 and f"jobs another user queued are theirs to cancel (squeue -r -j {ids} -o %i,%u)\n" in err, err


@pytest.mark.parametrize(("jobs_", "scancel", "squeue"), [
    (["123_1", "123_2", "123_3", "123_5", "124", "99_7", "123_10", "123_11"],
     "99_7 '123_[1-3,5,10-11]' 124", "99_7,123,124"),
    (["7_2", "7_0", "6"], "6 '7_[0,2]'", "6,7"),
    (["201", "200"], "200 201", "200,201"),
    ([], "", "")])
def test_job_ids_for_a_command_write_an_arrays_tasks_in_slurms_form(jobs_, scancel, squeue):
    """Every job named, in job order: scancel takes an array's tasks as 123_[1-3,5] (quoted, a shell glob);
    squeue -r -j the array's id (it reads that form as task 0); a lone task as it is."""
    from collapse_hpc.launch.slurm import scancel_args, squeue_args

    assert (scancel_args(jobs_), squeue_args(jobs_)) == (scancel, squeue)


def _queued_as(fake_slurm, user: str, lines: dict[str, str], name: str | None = None) -> None:
    """squeue.txt: each job id -> its state, queued by `user`, under `name` or the one sbatch queued it with."""
    named = {j: name or flag(scripts(fake_slurm)[int(j.split("_")[0])], "job-name") for j in lines}
    (fake_slurm / "squeue.txt").write_text("".join(f"{j}|{state}|0:00|None|{user}|N/A|{named[j]}\n"
                                                   for j, state in lines.items()))


def _refusing_scancel(fake_slurm, job: str) -> None:
    """scancel refuses `job` (another user's), as Slurm does, and cancels the rest."""
    (fake_slurm / "bin" / "scancel").write_text(
        f'#!/bin/bash\necho "$@" >> "$FAKE_SLURM/scancel.txt"\nfor j in "$@"; do [ "$j" = {job} ] && '
        f'{{ echo "scancel: error: Kill job error on job id {job}: Access/permission denied" >&2; rc=1; }}; done\n'
        'exit ${rc:-0}\n')


def test_recorded_job_ids_that_name_another_job_now_are_not_the_runs(tmp_path, fake_slurm):
    """Job ids are looked up whoever queued them: after the cluster's job-id counter was reset (a reinstalled
    slurmctld, FirstJobId) or wrapped, a recorded id named a stranger's job (or another of the user's), and
    submit took it for the unit's job and queued nothing, cancel scancelled it. A job is the run's only where its
    name is the one it was queued with."""
    cfg = write_config(tmp_path, generations=2, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    ids = [*(e["job_id"] for e in jobs(run)["units"].values()), jobs(run)["aggregate"]["job_id"]]
    for user in ("eve", os.environ.get("USER", "root")):  # a stranger's jobs, and the user's own of another run
        _queued_as(fake_slurm, user, {j: "PENDING" for j in ids}, name="train-llama")
        (fake_slurm / "scancel.txt").unlink(missing_ok=True)
        rc, out, err = collapse("cancel", run)
        assert rc == 0 and "nothing to cancel" in out and not (fake_slurm / "scancel.txt").exists(), out + err
        assert f"note: 3 job ids of this run's jobs.json now name other jobs: {ids[0]} (recorded for ltchain/" \
               f"replace-p0-s0/gen_000) is {user}'s 'train-llama'" in err, err
    before = len(scripts(fake_slurm))
    rc, out, err = collapse("submit", cfg, "--run", run, "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 0 and len(scripts(fake_slurm)) == before + 3, out + err  # both generations and the report anew
    assert "the cluster's job ids were reset or wrapped: they are not this run's, and are left alone" in err, err
    assert not (fake_slurm / "scancel.txt").exists()  # the stranger's report job was not cancelled either
    _queued_as(fake_slurm, "eve", {j: "PENDING" for j in ids})  # the same ids and names: a colleague's, the run's
    rc, out, err = collapse("submit", cfg, "--run", tmp_path / "run2", "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 0 and len(scripts(fake_slurm)) == before + 6 and "warning" not in err, err


def test_a_resubmit_beside_a_colleagues_report_job_queues_no_second_one_and_says_so(tmp_path, fake_slurm):
    """A group's run folder: a submit that queues more replaces the run's queued report job, which scancel
    refuses (a colleague's) without a word: two report jobs were left. It is tried first; refused, it stays
    the run's only one, said in one line naming whose it is."""
    cfg = write_config(tmp_path, generations=2, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    book = jobs(run)
    gen0, gen1 = (book["units"][f"ltchain/replace-p0-s0/gen_{g:03d}"]["job_id"] for g in range(2))
    report = book["aggregate"]["job_id"]
    _queued_as(fake_slurm, "bob", {gen0: "RUNNING", gen1: "PENDING", report: "PENDING"})
    _refusing_scancel(fake_slurm, report)
    rc, out, err = collapse("submit", cfg, "--run", run, "--generations", "3", "--profile",
                            REPO / "slurm" / "local.yaml")
    assert rc == 0 and len(scripts(fake_slurm)) == 4, out + err  # gen_002 only: no second report job
    assert [ln for ln in err.splitlines() if ln.startswith("warning")] == [
        f"warning: the run's report job {report} is bob's and scancel refused to cancel it (Access/"
                   f"permission denied): no second one is queued; it reports once the jobs it waits on end, before "
                   f"this submit's: for a report of every unit, submit again once these have ended, or ask bob to "
                   f"cancel it (scancel {report}) first"], err
    assert f"{report}(queued, bob's)" in out and jobs(run)["aggregate"] == book["aggregate"], out
    (fake_slurm / "scancel.txt").unlink()
    gen2 = jobs(run)["units"]["ltchain/replace-p0-s0/gen_002"]["job_id"]
    _queued_as(fake_slurm, "bob", {gen0: "RUNNING", gen1: "PENDING", gen2: "PENDING", report: "PENDING"})
    _refusing_scancel(fake_slurm, "none")  # an operator may cancel it: then it is replaced as the user's own
    rc, out, err = collapse("submit", cfg, "--run", run, "--generations", "4", "--profile",
                            REPO / "slurm" / "local.yaml")
    assert rc == 0 and len(scripts(fake_slurm)) == 6 and "warning" not in err, out + err  # gen_003, a report
    assert (fake_slurm / "scancel.txt").read_text().split() == [report]
    assert jobs(run)["aggregate"]["history"] == [report]


def test_a_resubmit_whose_chain_waits_on_a_colleagues_job_it_cannot_cancel_is_refused(tmp_path, fake_slurm):
    """A chain queued anew from a generation that is neither done nor queued replaces the later generations'
    queued jobs: one of a colleague's, which scancel refused without a word, ran its unit beside the new job
    where it could still run. Nothing is queued, said in one line."""
    cfg = write_config(tmp_path, generations=2, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    book = jobs(run)
    gen1 = book["units"]["ltchain/replace-p0-s0/gen_001"]["job_id"]
    _queued_as(fake_slurm, "bob", {gen1: "PENDING"})  # gen_000's job ended, its unit unfinished
    _refusing_scancel(fake_slurm, gen1)
    rc, out, err = collapse("submit", cfg, "--run", run, "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 2 and err[err.index("error:"):] == (
        f"error: job {gen1}, queued by bob for ltchain/replace-p0-s0/gen_001, waits on a "
                               f"generation this submit queues anew, and scancel refused to cancel it (Access/"
                               f"permission denied): two jobs would run that unit; the 2 jobs this submit had queued "
                               f"cancelled, nothing of this submit is queued: ask bob to cancel it (scancel {gen1}), "
                               f"then submit again\n"), err
    assert jobs(run)["units"] == book["units"] and jobs(run)["aggregate"] == book["aggregate"]


def test_cancel_runs_while_aggregate_reads_the_run_and_a_submit_still_waits_for_both(tmp_path, fake_slurm):
    """A hand-run aggregate holds the run's lock while it reads (about a minute on the demo): cancel was
    refused meanwhile. It writes nothing aggregate reads (the jobs record their own end), so it runs beside
    it; a submit is still refused while aggregate reads, and while a cancel begun beside it still runs."""
    import json
    import socket
    import subprocess
    import sys

    cfg = write_config(tmp_path, generations=2, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    queued = [jobs(run)["units"][f"ltchain/replace-p0-s0/gen_{g:03d}"]["job_id"] for g in range(2)]
    (fake_slurm / "squeue.txt").write_text("".join(f"{j}|PENDING|0:00\n" for j in queued))
    reader = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom collapse_hpc.store.lock import reading\n"
                               "with reading(sys.argv[1], 'aggregate'):\n    print('held', flush=True)\n"
                               "    time.sleep(60)\n", str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "held\n"
        rc, _, err = collapse("submit", cfg, "--run", run, "--profile", REPO / "slurm" / "local.yaml")
        assert rc == 2 and "collapse-hpc aggregate" in err, err  # a writer waits for the reader
        rc, out, err = collapse("cancel", run)
        assert rc == 0 and "cancelled 2 queued or running jobs" in out, err
        assert (fake_slurm / "scancel.txt").read_text().split() == sorted(queued)
        assert reader.poll() is None
        assert json.loads((run / ".lock").read_text())["pid"] == reader.pid  # aggregate's lock, as it was
        assert not (run / ".lock.beside").exists()
    finally:
        reader.kill()
        reader.wait()
    # a cancel still running beside a reader that is done: a submit that takes the lock now refuses
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (run / ".lock.beside").write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                      "command": "cancel", "launcher": False}))
        rc, _, err = collapse("submit", cfg, "--run", run, "--profile", REPO / "slurm" / "local.yaml")
        assert rc == 2 and f"pid {sleeper.pid}" in err and "collapse-hpc cancel" in err, err
        assert not (run / ".lock").exists()  # the submit's own lock, given back
    finally:
        sleeper.kill()
        sleeper.wait()
    submit(cfg, run)  # that cancel is gone: its record is no one's
    assert not (run / ".lock.beside").exists()


def test_cancel_lists_an_arrays_tasks_in_task_order(tmp_path, fake_slurm):
    """It listed 1897_0 1897_1 1897_10 1897_100 …, as if tasks 2 to 9 were left running."""
    cfg = write_config(tmp_path, generations=1, ltarray={"parts": 12})
    run = tmp_path / "run"
    submit(cfg, run)
    tasks = [jobs(run)["units"][f"ltarray/replace-p0-s0/part_{p:03d}"]["job_id"] for p in range(12)]
    (fake_slurm / "squeue.txt").write_text("".join(f"{t}|PENDING|0:00\n" for t in reversed(tasks)))
    rc, out, err = collapse("cancel", run)
    assert rc == 0 and f"cancelled 12 queued or running jobs: {' '.join(tasks[:10])} and 2 more;" in out, out


def test_status_says_why_a_job_waits_unless_it_waits_for_its_chain(tmp_path, fake_slurm):
    """A drained node (or a QOS limit, or a dependency never satisfied) keeps a job PENDING for ever;
    status showed only PENDING, while squeue knew why."""
    import json

    cfg = write_config(tmp_path, generations=2, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    book = jobs(run)
    chain = [book["units"][f"ltchain/replace-p0-s0/gen_{g:03d}"]["job_id"] for g in range(2)]
    drained = "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions"
    (fake_slurm / "squeue.txt").write_text(f"{chain[0]}|PENDING|0:00|{drained}\n{chain[1]}|PENDING|0:00|Dependency\n"
                                           f"{book['aggregate']['job_id']}|PENDING|0:00|DependencyNeverSatisfied\n")
    rc, out, err = collapse("status", run)
    assert rc == 0, err
    lines = out.splitlines()
    assert any(ln.startswith("  gen_000  PENDING") and ln.endswith(f"({drained})") for ln in lines), out
    # its chain's wait: said as a local chain's is, with no reason of Slurm's
    assert any(ln.startswith("  gen_001  PENDING (after gen 0) job") and not ln.endswith(")") for ln in lines), out
    assert any(ln.startswith("aggregate  PENDING") and ln.endswith("(DependencyNeverSatisfied)") for ln in lines), out
    rc, out, _ = collapse("status", run, "--json")
    units = json.loads(out)["chains"][0]["units"]
    assert units[0]["reason"] == drained and "reason" not in units[1]
    # a node failure requeues a job whose unit had finished: the unit is done, whatever its job waits for
    (fake_slurm / "squeue.txt").write_text("")
    rc, _, err = collapse("ltchain", run / "config.yaml", "--run", run, "--variant", "replace-p0-s0", "--unit", "0")
    assert rc == 0, err
    (fake_slurm / "squeue.txt").write_text(f"{chain[0]}|PENDING|0:00|BeginTime\n")
    rc, out, _ = collapse("status", run)
    line = next(ln for ln in out.splitlines() if ln.startswith("  gen_000"))
    assert "done" in line and "BeginTime" not in line, line


def test_status_explains_a_requeued_job_held_until_its_begin_time(tmp_path, fake_slurm):
    """A generation preempted (or its node failed) is requeued, and Slurm starts it again from a begin time it sets:
    status showed only Slurm's bare word, (BeginTime), which these jobs never ask for, then said "about 2 minutes
    after the requeue", Slurm's default (AuthInfo cred_expire), which a cluster may set otherwise (the dev
    cluster's: 10 s). It tells the begin time squeue gives (StartTime), and where none, no length of wait."""
    import datetime
    import json

    cfg = write_config(tmp_path, generations=2, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    first = jobs(run)["units"]["ltchain/replace-p0-s0/gen_000"]["job_id"]
    begins = datetime.datetime.now().replace(microsecond=0) + datetime.timedelta(seconds=11)
    later = begins + datetime.timedelta(days=1)
    for start, said in ((begins, f"from {begins:%H:%M:%S}, its begin time"),
                        (later, f"from {later:%Y-%m-%d %H:%M:%S}, its begin time"),
                        (None, "once the cluster's requeue delay has passed, its SchedulerParameters' "
                               "requeue_delay where set, else its AuthInfo's cred_expire, 120 s by default")):
        told = start.isoformat() if start else "N/A"
        (fake_slurm / "squeue.txt").write_text(f"{first}|PENDING|0:00|BeginTime|{told}\n")
        rc, out, err = collapse("status", run)
        assert rc == 0, err
        line = next(ln for ln in out.splitlines() if ln.startswith("  gen_000"))
        assert line.endswith(f"(requeued: Slurm may start it again {said})"), line
        assert "2 minutes" not in out, out
    rc, out, _ = collapse("status", run, "--json")  # scripts get Slurm's own word
    assert json.loads(out)["chains"][0]["units"][0]["reason"] == "BeginTime"
    (fake_slurm / "squeue.txt").write_text(f"{first}|PENDING|0:00|BeginTime|{begins.isoformat()}\n")
    rc, out, _ = collapse("status", run, "--json")  # and its StartTime as squeue gives it
    unit = json.loads(out)["chains"][0]["units"][0]
    assert (unit["reason"], unit["start_time"]) == ("BeginTime", begins.isoformat()), unit


def _queued_chain(tmp_path, generations: int) -> tuple:
    """A chain of `generations` submitted to the fake Slurm: its run folder and its generations' job ids."""
    cfg = write_config(tmp_path, generations=generations, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    return run, [jobs(run)["units"][f"ltchain/replace-p0-s0/gen_{g:03d}"]["job_id"] for g in range(generations)]


@pytest.mark.parametrize("reason, by", [("JobHeldUser", "held by scontrol hold"),
                                         ("JobHeldAdmin", "held by an administrator's scontrol hold"),
                                         ("job requeued in held state", "requeued and held by scontrol requeuehold")])
def test_status_explains_a_held_generation_and_how_to_release_it(tmp_path, fake_slurm, reason, by):
    """A generation held (scontrol hold) waits, and its chain after it, until released: status showed Slurm's bare
    word, (JobHeldAdmin), and submit again says everything is queued, so nothing told the user the chain stalls."""
    run, ids = _queued_chain(tmp_path, 3)
    (fake_slurm / "squeue.txt").write_text(f"{ids[1]}|PENDING|0:00|{reason}\n{ids[2]}|PENDING|0:00|Dependency\n")
    rc, out, err = collapse("status", run)
    line = next(ln for ln in out.splitlines() if ln.startswith("  gen_001"))
    assert rc == 0 and re.search(rf"job {ids[1]} +\({re.escape(by)}: it and gen_002 wait until "
                                 r"`scontrol release` of its job\)$", line), out + err


@pytest.mark.parametrize("reason", ["JobHeldUser", "DependencyNeverSatisfied"])
def test_the_report_jobs_reason_lines_up_with_its_units(tmp_path, fake_slurm, reason):
    """The report's job's reason, with no elapsed time, followed its job id with the id's padding stripped, out of
    line with the units' reasons above it."""
    run, ids = _queued_chain(tmp_path, 2)
    report = jobs(run)["aggregate"]["job_id"]
    (fake_slurm / "squeue.txt").write_text(f"{ids[0]}|PENDING|0:00|BeginTime\n{ids[1]}|PENDING|0:00|Dependency\n"
                                           f"{report}|PENDING|0:00|{reason}\n")
    rc, out, err = collapse("status", run)
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith(("  gen_000", "aggregate"))}
    assert rc == 0 and lines["aggregate"].endswith(")"), out + err
    assert lines["gen_000"].index("  (requeued") == lines["aggregate"].index("  ("), out


def test_a_report_job_cancelled_by_hand_reads_so_and_how_to_queue_it_again(tmp_path, fake_slurm):
    """The report's job scancelled while it waited: status said it "waited on afterany:…", as if its units had
    cancelled it (afterany waits them out however they end), and gave no command to queue it again."""
    run, units = _queued_chain(tmp_path, 2)
    book = jobs(run)
    (fake_slurm / "squeue.txt").write_text(f"{units[0]}|RUNNING|0:05\n{units[1]}|PENDING|0:00|Dependency\n")
    (fake_slurm / "sacct.txt").write_text(f"{book['aggregate']['job_id']}|CANCELLED by 0|0:00\n")
    rc, out, err = collapse("status", run)
    assert rc == 0 and "waited on" not in out, out + err
    assert re.search(rf"aggregate  CANCELLED +job {book['aggregate']['job_id']}\n +never started, no log "
                     r"\(cancelled while queued: scancel or collapse-hpc cancel\)\n\nthe report's job was cancelled; "
                     r"queue it again \(finished units are kept, queued ones not queued twice\):\n  collapse-hpc "
                     r"submit ", out), out


def test_status_names_the_running_report_jobs_log(tmp_path, fake_slurm):
    """A running generation's line is followed by its log; the report's job's was not, so following it (the
    figures take minutes on a large run) meant finding its job id first."""
    run, units = _queued_chain(tmp_path, 2)
    agg = jobs(run)["aggregate"]
    Path(agg["log"]).write_text("drawing figures\n")
    (fake_slurm / "sacct.txt").write_text("".join(f"{u}|COMPLETED|00:01:00\n" for u in units))
    (fake_slurm / "squeue.txt").write_text(f"{agg['job_id']}|RUNNING|0:05\n")
    rc, out, err = collapse("status", run)
    lines = out.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("aggregate  RUNNING"))
    assert rc == 0 and lines[at + 1] == f"      log: {agg['log']}", out + err


def test_a_copied_run_folder_does_not_own_the_originals_jobs(tmp_path, fake_slurm):
    """cp -r of a run whose jobs were queued: cancel on the copy cancelled the original's jobs, submit
    on the copy took them as its own queued units (they write to the original) and status showed them."""
    import shutil

    cfg = write_config(tmp_path, generations=2, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    ids = [e["job_id"] for e in jobs(run)["units"].values()]
    (fake_slurm / "squeue.txt").write_text("".join(f"{i}|PENDING|0:00|Dependency\n" for i in ids))
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    rc, _, err = collapse("cancel", copy)
    assert rc == 2 and f"records the jobs of {run}" in err and not (fake_slurm / "scancel.txt").exists()
    rc, out, _ = collapse("status", copy)
    assert rc == 0 and f"a copy of {run}" in out and "PENDING" not in out and "not submitted" in out
    before = set(scripts(fake_slurm))
    out = submit(cfg, copy)
    new = set(scripts(fake_slurm)) - before
    assert len(new) == 2 + 1 and "(queued)" not in out  # both generations and the report, for the copy
    assert all(str(copy) in scripts(fake_slurm)[n] for n in new)
    assert {e["job_id"] for e in jobs(copy)["units"].values()} == {str(n) for n in new} - {
        jobs(copy)["aggregate"]["job_id"]}
    rc, out, _ = collapse("status", run)  # the original keeps its own
    assert "a copy of" not in out and "PENDING" in out
    rc, out, _ = collapse("status", copy)  # and the copy, from its first submit, its own
    assert "a copy of" not in out


def test_submit_redoes_a_finished_generation_the_next_one_cannot_read(tmp_path, fake_slurm):
    """gen_001's data corrupted after it finished (same size): submit queued gen_002 alone, which
    refused to start on it ('an earlier generation … does not verify'), and again at every submit.
    The generations the next one reads are hashed as its unit will hash them."""
    cfg = write_config(tmp_path, generations=3, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    (fake_slurm / "squeue.txt").write_text("")  # those jobs are gone; two generations done by hand
    for g in (0, 1):
        rc, _, err = collapse("ltchain", run / "config.yaml", "--run", run, "--variant", "replace-p0-s0", "--unit", g)
        assert rc == 0, err
    shard = run / "ltchain" / "replace-p0-s0" / "gen_001" / "metrics.parquet"
    data = bytearray(shard.read_bytes())
    data[60] ^= 0xFF
    shard.write_bytes(bytes(data))
    before = set(scripts(fake_slurm))
    out = submit(cfg, run)
    new = sorted(set(scripts(fake_slurm)) - before)
    book = jobs(run)["units"]
    assert [book[f"ltchain/replace-p0-s0/gen_{g:03d}"]["job_id"] for g in (1, 2)] == [str(n) for n in new[:2]], out
    assert flag(scripts(fake_slurm)[new[1]], "dependency") == f"afterok:{new[0]}"


def test_a_resubmission_keeps_the_runs_own_profile(tmp_path, fake_slurm, monkeypatch):
    # first submitted with --profile; a later `make submit` without PROFILE took the site profile
    # (another partition, account, image) for the jobs of the same run
    monkeypatch.chdir(tmp_path)
    assert collapse("profile", "init")[0] == 0  # slurm/site.yaml: partition debug
    (tmp_path / "own.yaml").write_text("name: own\npartition: gpu\n")
    cfg = write_config(tmp_path, generations=1, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run, profile=tmp_path / "own.yaml")
    rc, out, err = collapse("submit", cfg, "--run", run, "--generations", "2")
    assert rc == 0, err
    assert f"submitting with the profile of its earlier submit, {tmp_path / 'own.yaml'}" in out
    book = jobs(run)
    assert book["profile"] == str(tmp_path / "own.yaml")
    script = scripts(fake_slurm)[int(book["units"]["ltchain/replace-p0-s0/gen_001"]["job_id"])]
    assert flag(script, "partition") == "gpu"
    (tmp_path / "own.yaml").unlink()  # gone: one line, not another profile in its place
    rc, _, err = collapse("submit", cfg, "--run", run, "--generations", "3")
    assert rc == 2 and "submitted with the profile" in err and "--profile P" in err
    rc, _, err = collapse("submit", cfg, "--run", run, "--generations", "3", "--profile", "slurm/site.yaml")
    assert rc == 0, err
    assert jobs(run)["profile"] == str(tmp_path / "slurm" / "site.yaml")


def test_the_resume_command_runs_from_any_folder(tmp_path, fake_slurm, monkeypatch):
    """The run's saved config kept data_dir and the profile as typed (data, p.yaml), read from the folder a
    command runs in: status's resume command (engine.resume_command), pasted in another folder, ended with
    one line (the profile 'not found from here', the data set 'not prepared'). Both are saved absolute."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(project)
    (project / "p.yaml").write_text((REPO / "slurm" / "local.yaml").read_text())
    assert collapse("data", "prepare", "digits", "--data-dir", "data")[0] == 0
    shutil.copytree(project / "data" / "digits", project / "data" / "mine")  # not prepared by the run itself
    cfg = write_config(project, generations=1, data_dir="data", ltchain={}, vae={"dataset": "mine"})
    rc, _, err = collapse("submit", cfg.name, "--run", "run", "--profile", "p.yaml")
    assert rc == 0, err
    monkeypatch.chdir(elsewhere)
    resume = shlex.split(engine.resume_command(RunStore(project / "run"), "slurm"))
    rc, out, err = collapse(*resume[1:], "--generations", "2")
    assert rc == 0, err
    assert f"submitting with the profile of its earlier submit, {project / 'p.yaml'}" in out
    assert "vae/" in out and not (elsewhere / "data").exists()
    saved = yaml.safe_load((project / "run" / "config.yaml").read_text())
    assert (saved["data_dir"], saved["profile"]) == (str(project / "data"), str(project / "p.yaml"))
    assert jobs(project / "run")["profile"] == str(project / "p.yaml")


@pytest.mark.parametrize("parent, why", [("COMPLETED", "cancelled while queued: scancel or collapse-hpc cancel"),
                                         ("FAILED", "waited on afterok:{p}: job {p} ended FAILED")])
def test_status_tells_a_job_cancelled_by_hand_from_one_its_parent_failed(tmp_path, fake_slurm, parent, why):
    # a generation cancelled while queued read 'waited on afterok:X' as if X had failed
    run, gen = _queued_chain(tmp_path, 2)
    (fake_slurm / "sacct.txt").write_text(f"{gen[0]}|{parent}|0:10\n{gen[1]}|CANCELLED by 0|0:00\n")
    rc, out, err = collapse("status", run)
    assert rc == 0, err
    assert f"never started, no log ({why.format(p=gen[0])})" in out


def test_an_aggregation_job_short_of_memory_reports_the_first_replicates_that_fit(tmp_path, fake_slurm):
    """A run whose report of every replicate needs more than jobs.aggregate.mem: the dry run and submit
    say so, and the aggregation job (aggregate.job) reports the first replicates that fit, as recorded
    by submit; it would otherwise be killed for its memory after every unit had finished."""
    from collapse_hpc import experiments
    from collapse_hpc.launch import estimate
    from collapse_hpc.launch.debug import execute
    from collapse_hpc.report import aggregate
    from collapse_hpc.store import RunStore

    gaussian = {"generations": 300, "samples": [10], "replicates": 400, "chunk_replicates": 400}
    cfg = write_config(tmp_path, gmm={"enabled": False}, lm={"enabled": False}, vae={"enabled": False},
                       gaussian=gaussian)
    local = yaml.safe_load((REPO / "slurm" / "local.yaml").read_text())
    local["jobs"]["aggregate"]["mem"] = "1G"
    prof = tmp_path / "small.yaml"
    prof.write_text(yaml.safe_dump(local))
    rc, out, _ = collapse("submit", cfg, "--run", tmp_path / "dry", "--profile", prof, "--dry-run")
    assert rc == 0 and "WARNING: the report of every replicate needs about" in out, out
    rc, out, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof)
    store = RunStore(tmp_path / "run")
    run = store.load_config(experiments.sections())
    fits = estimate.report_replicates(run, engine.plan(run), 0.8 * 2**30)
    assert rc == 0 and 1 <= fits < 400 and jobs(store.root)["report_replicates"] == fits
    assert (f"the profile's jobs.aggregate.mem is 1G: the aggregation job reports the first {fits} replicates "
            "of each variant") in err, err
    run = dataclasses.replace(run, executor="debug")
    execute(store, run, engine.plan(run))  # the units, here; then the aggregation job itself
    assert aggregate.job(str(store.root)) == 0
    import pandas as pd

    assert pd.read_parquet(store.root / "report" / "metrics.parquet")["replicate"].max() == fits - 1
    assert f"uses the first {fits} of each variant" in (store.root / "report" / "index.html").read_text()

    del local["jobs"]["aggregate"]["mem"]  # no memory asked for: nothing to fit, every replicate reported
    prof.write_text(yaml.safe_dump(local))
    assert collapse("submit", cfg, "--run", tmp_path / "run", "--profile", prof)[0] == 0
    assert "report_replicates" not in jobs(store.root)


def test_a_long_chains_row_names_its_first_and_last_jobs(tmp_path, fake_slurm):
    """submit's table listed every job of a chain in one row (paper.yaml's 10 generations: 190 characters,
    queued ones marked); a run of more than 3 alike shows its first and last job and how many between."""
    cfg = write_config(tmp_path, generations=12, ltchain={})
    run = tmp_path / "run"
    out = submit(cfg, run)
    book = jobs(run)["units"]
    ids = [book[f"ltchain/replace-p0-s0/gen_{g:03d}"]["job_id"] for g in range(12)]
    row = next(ln for ln in out.splitlines() if ln.startswith("ltchain/"))
    assert row.endswith(f"{ids[0]} -> (10 more) -> {ids[-1]}") and len(row) < 100, row
    (fake_slurm / "squeue.txt").write_text("".join(f"{i}|PENDING|0:00\n" for i in ids[:2]))  # the rest gone
    row = next(ln for ln in submit(cfg, run).splitlines() if ln.startswith("ltchain/"))
    new = [jobs(run)["units"][f"ltchain/replace-p0-s0/gen_{g:03d}"]["job_id"] for g in range(2, 12)]
    assert row.endswith(f"{ids[0]}(queued) -> {ids[1]}(queued) -> {new[0]} -> (8 more) -> {new[-1]}"), row


def test_only_a_submit_limit_withdraws_the_submit():
    """sbatch's last line is the same for a size or time limit of the QOS as for a submit limit; only its
    reason line tells them apart, and only a submit limit withdraws what the submit had queued."""
    from submitit.core.utils import FailedJobError

    from collapse_hpc.errors import UserError
    from collapse_hpc.launch.slurm import SubmitLimit, _sbatch

    def refused(reason):
        raise FailedJobError(f"sbatch: error: {reason}\nsbatch: error: Batch job submission failed: Job violates "
                             f"accounting/QOS policy (job submit limit, user's size and/or time limits)")

    with pytest.raises(UserError) as e:
        _sbatch("gen_001", "lt00g001-t:gen_001", lambda: refused("QOSMaxWallDurationPerJobLimit"))
    assert not isinstance(e.value, SubmitLimit)
    assert str(e.value) == ("sbatch refused gen_001: Job violates accounting/QOS policy (job submit limit, user's "
                            "size and/or time limits)")
    with pytest.raises(SubmitLimit) as e:
        _sbatch("gen_001", "lt00g001-t:gen_001", lambda: refused("AssocMaxSubmitJobLimit"))
    assert e.value.limit == "AssocMaxSubmitJobLimit"


def test_a_resubmission_that_finds_every_job_queued_counts_none_against_the_limits(tmp_path, fake_slurm):
    """The jobs a submit would queue, weighed against MaxJobCount and the user's limit on jobs queued at
    once, always counted the report's job: a resubmission of a run whose jobs are all queued ('nothing to
    submit') was refused by a user at their limit, as if it queued one more."""
    from collapse_hpc import engine, experiments
    from collapse_hpc.launch.slurm import jobs_to_queue, pending_units
    from collapse_hpc.store import RunStore

    cfg = write_config(tmp_path, generations=2, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    book = jobs(run)
    queue = {**{e["job_id"]: "PENDING" for e in book["units"].values()}, book["aggregate"]["job_id"]: "PENDING"}
    store = RunStore(run)
    config = store.load_config(experiments.sections())
    chains = engine.load_plan(store, config)
    pending = pending_units(store, config, chains)
    assert jobs_to_queue(store, chains, pending, queue) == {"gpu": 0, "aggregate": 0}
    gone = dict(queue)
    del gone[book["aggregate"]["job_id"]]  # the report's job cancelled: queued again, after the units
    assert jobs_to_queue(store, chains, pending, gone) == {"gpu": 0, "aggregate": 1}
    assert jobs_to_queue(store, chains, pending, {}) == {"gpu": 2, "aggregate": 1}


def test_an_array_part_that_finished_after_submit_looked_is_not_queued_again(tmp_path, fake_slurm):
    """submit works out the units to start before it takes the run's lock and reads the queue: a part whose job
    ended in between (running when looked at, gone from the queue by then) was queued again, a job that only
    skipped its finished unit. A part is queued only where it is still unfinished then."""
    import copy

    from collapse_hpc import engine, experiments, launch
    from collapse_hpc.launch import debug
    from collapse_hpc.launch.slurm import pending_units
    from collapse_hpc.store import RunStore

    config = experiments.config_from_dict({"name": "t", "generations": 1, "seeds": [0], "executor": "slurm",
                                           "profile": str(REPO / "slurm" / "local.yaml"),
                                           "tail": {"replicates": 2, "chunk_replicates": 1}})
    store = RunStore(tmp_path / "run")
    (chain,) = engine.open_run(store, config)
    pending = pending_units(store, config, [chain])
    assert len(pending) == 2
    first = copy.copy(chain)
    first.jobs = chain.jobs[:1]
    debug.execute(store, config, [first])  # its job ends meanwhile
    launch.execute(store, config, [chain], "slurm", pending=pending)
    book = jobs(store.root)["units"]
    assert "job_id" not in book.get(chain.jobs[0].label, {}), book
    assert book[chain.jobs[1].label]["job_id"]


# what follows the command's name where slurmctld does not answer (hangs: within 0.2 s)
NO_ANSWER = (": slurmctld did not answer within 0.2 s (down, failing over or overloaded: `scontrol ping` says "
             "which); try again once it answers")


@pytest.mark.parametrize("hung, named", [("scontrol", "scontrol show partition"), ("sbatch", "sbatch --test-only"),
                                         ("squeue", "squeue")])
def test_a_submit_slurmctld_does_not_answer_is_one_line(tmp_path, fake_slurm, monkeypatch, hung, named):
    """A slurmctld that did not answer (down, failing over) ended submit in a TimeoutExpired traceback after
    two minutes. It is one line naming the command, exit status 2, nothing queued."""
    hangs(fake_slurm, monkeypatch, hung)
    cfg = write_config(tmp_path, generations=1, ltchain={})
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 2 and err == f"error: {named}{NO_ANSWER}\n", err
    assert scripts(fake_slurm) == {}


def test_cancel_and_profile_init_slurmctld_does_not_answer_are_one_line(tmp_path, fake_slurm, monkeypatch):
    cfg = write_config(tmp_path, generations=1, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    job = jobs(run)["units"]["ltchain/replace-p0-s0/gen_000"]["job_id"]
    (fake_slurm / "squeue.txt").write_text(f"{job}|PENDING|0:00\n")
    hangs(fake_slurm, monkeypatch, "scancel", "sinfo")
    rc, out, err = collapse("cancel", run)
    assert rc == 2 and err == f"error: scancel{NO_ANSWER}\n" and not out, out + err
    monkeypatch.chdir(tmp_path)
    rc, _, err = collapse("profile", "init")
    assert rc == 2 and err == f"error: sinfo{NO_ANSWER}\n" and not (tmp_path / "slurm").exists(), err


@pytest.mark.parametrize("generations", [2, 13])
def test_a_resubmit_whose_scancel_gets_no_answer_says_what_it_queued(tmp_path, fake_slurm, monkeypatch, generations):
    """A chain queued anew cancels the jobs it replaces: where scancel got no answer, the new jobs stay queued and
    recorded, and the line says so and which jobs were not cancelled (they would run their units beside them):
    every one of them, as jobs.json no longer names them."""
    from collapse_hpc.logs import first_few

    cfg = write_config(tmp_path, generations=generations, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    labels = [f"ltchain/replace-p0-s0/gen_{g:03d}" for g in range(generations)]
    old = [jobs(run)["units"][label]["job_id"] for label in labels[1:]]
    _queued_as(fake_slurm, os.environ.get("USER", "root"), dict.fromkeys(old, "PENDING"))  # gen_000's ended unfinished
    hangs(fake_slurm, monkeypatch, "scancel")
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", REPO / "slurm" / "local.yaml")
    new = [jobs(run)["units"][label]["job_id"] for label in labels]
    assert not set(old) & set(new) and len(scripts(fake_slurm)) == 2 * generations + 1, scripts(fake_slurm)
    assert rc == 2 and err[err.index("error:"):] == (
        f"error: scancel{NO_ANSWER}; this submit queued {generations} jobs ({first_few(new, 10)}), recorded in "
        f"jobs.json (collapse-hpc status, cancel); the queued jobs they replace are not cancelled: scancel "
        f"{' '.join(old)}\n"), err


def test_a_resubmit_whose_slurmctld_goes_part_way_says_what_it_queued_and_left(tmp_path, fake_slurm):
    """slurmctld stopped (restarted, failing over) part-way through a submit queuing a chain anew: sbatch fails at
    once ("Unable to contact slurm controller"). The line said "sbatch refused" the job, not what this submit had
    queued nor the queued jobs it replaces, which jobs.json no longer names: a submit again left them queued
    beside the new chain, two jobs for a unit."""
    cfg = write_config(tmp_path, generations=3, ltchain={})
    run = tmp_path / "run"
    submit(cfg, run)
    old = [jobs(run)["units"][f"ltchain/replace-p0-s0/gen_00{g}"]["job_id"] for g in (1, 2)]
    _queued_as(fake_slurm, os.environ.get("USER", "root"), dict.fromkeys(old, "PENDING"))  # gen_000's ended
    sbatch = fake_slurm / "bin" / "sbatch"
    sbatch.write_text(sbatch.read_text().replace('cp "${@: -1}"', '[ $n = 107 ] && { echo "sbatch: error: Batch '
                                                 'job submission failed: Unable to contact slurm controller (connect '
                                                 'failure)" >&2; exit 1; }; cp "${@: -1}"'))
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", REPO / "slurm" / "local.yaml")
    assert [jobs(run)["units"][f"ltchain/replace-p0-s0/gen_00{g}"]["job_id"] for g in (0, 1)] == ["105", "106"]
    assert rc == 2 and "Traceback" not in err and err[err.index("error:"):] == (
        "error: sbatch of ltchain/replace-p0-s0/gen_002: slurmctld cannot be reached (Unable to contact slurm "
        "controller (connect failure): down or restarting, `scontrol ping` says when it is back), so it was not "
        "queued; submit again once it answers; this submit queued 2 jobs (105 106), recorded in jobs.json "
        "(collapse-hpc status, cancel); the queued jobs they replace are not cancelled: scancel "
        f"{' '.join(old)}\n"), err


def test_a_sbatch_slurmctld_does_not_answer_says_the_job_may_be_queued_and_what_was(tmp_path, fake_slurm, monkeypatch):
    """submitit ran the submission's sbatch with no timeout: a slurmctld that did not answer held submit for ever.
    It is one line now: sbatch got no answer, its job may be queued all the same (the answer lost) and how to find
    it, which jobs.json does not record, and the jobs queued before it, which it does."""
    from collapse_hpc.launch import slurm

    monkeypatch.setattr(slurm, "SLURMCTLD_WAIT", 1)
    sbatch = fake_slurm / "bin" / "sbatch"
    sbatch.write_text(sbatch.read_text().replace('cp "${@: -1}"', '[ $n = 103 ] && exec sleep 5; cp "${@: -1}"'))
    cfg = write_config(tmp_path, generations=2, ltchain={}, ltarray={"parts": 2})
    run = tmp_path / "run"
    rc, _, err = collapse("submit", cfg, "--run", run, "--profile", REPO / "slurm" / "local.yaml")
    chain = "ltchain/replace-p0-s0/gen_"
    first = flag(scripts(fake_slurm)[101], "job-name")  # the run's name after the chain's head, before its label
    array = first.replace("lt00g000-", "lt-array-").replace(f"{chain}000", "ltarray")
    assert rc == 2 and "Traceback" not in err and err[err.index("error:"):] == (
        "error: sbatch of the ltarray array: slurmctld did not answer within 1 s (down, failing over or overloaded: "
        "`scontrol ping` says which); it may have queued the job all the same, its answer lost: before submitting "
        f"again, find it (squeue --me -n {shlex.quote(array)}) and cancel it, as jobs.json does not record it; this "
        "submit queued 2 jobs (101 102), recorded in jobs.json (collapse-hpc status, cancel)\n"), err
    book = jobs(run)
    assert [book["units"][f"{chain}{g:03d}"]["job_id"] for g in range(2)] == ["101", "102"]
    assert not [u for label, u in book["units"].items() if label.startswith("ltarray") and u.get("job_id")]
    assert "aggregate" not in book and sorted(scripts(fake_slurm)) == [101, 102]


def test_a_submit_cut_short_says_how_many_of_its_jobs_it_does_not_name(tmp_path, fake_slurm, monkeypatch):
    """The line of a submit that ends part-way named its first 10 jobs queued and recorded as if they were all."""
    from collapse_hpc.launch import slurm

    monkeypatch.setattr(slurm, "SLURMCTLD_WAIT", 1)
    sbatch = fake_slurm / "bin" / "sbatch"  # the report's job, after the chain's 12
    sbatch.write_text(sbatch.read_text().replace('cp "${@: -1}"', '[ $n = 113 ] && exec sleep 5; cp "${@: -1}"'))
    cfg = write_config(tmp_path, generations=12, ltchain={})
    rc, _, err = collapse("submit", cfg, "--run", tmp_path / "run", "--profile", REPO / "slurm" / "local.yaml")
    assert rc == 2 and err.endswith(f"; this submit queued 12 jobs ({' '.join(map(str, range(101, 111)))} and 2 more), "
                                    f"recorded in jobs.json (collapse-hpc status, cancel)\n"), err
