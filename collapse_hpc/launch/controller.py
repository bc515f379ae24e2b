"""The controller of a local unit's ranks: submitit's, which also records the signal that ended a rank.

A rank killed from outside (SIGKILL from the kernel's out-of-memory killer, most often) writes nothing
itself; only its parent, this controller, learns the signal (its exit status), and submitit's drops it.
This one writes <folder>/<job>_<rank>_signal.json for each rank a signal ended, which the launcher reads
to say which rank ended by which signal. The local back-end starts it in place of submitit's (exec, the
last of its setup lines, so the job's id stays the pid submitit knows).

API: command(folder) -> the setup line, ended(folder, job_id) -> {rank: (pid, signal)}, said(signal, advice),
name(signal).
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
from pathlib import Path

from submitit.local.local import Controller as _Submitits

OOM = "the usual cause is the kernel's out-of-memory killer (its log: dmesg or journalctl -k)"


def command(folder: Path) -> str:
    return f"exec {shlex.quote(sys.executable)} -m collapse_hpc.launch.controller {shlex.quote(str(folder))}"


def _path(folder: Path, job_id: str, rank: int) -> Path:
    return Path(folder) / f"{job_id}_{rank}_signal.json"


class Controller(_Submitits):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.pid = str(os.getpid())  # exec'd by the setup lines' shell: its pid is the job's id, not its parent's
        # submitit's job.cancel() signalled the shell, which died and left the ranks to the launcher's own
        # interrupt (local.py, cancel); now it reaches this process, which must not SIGKILL them a second later
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def wait(self, freq: int = 24):
        codes = super().wait(freq)
        for rank, (task, code) in enumerate(zip(self.tasks, codes)):
            if code is not None and code < 0:
                with contextlib.suppress(OSError):  # a full disk: the unit's end is said without its signal
                    _path(self.folder, self.pid, rank).write_text(json.dumps({"pid": task.pid, "signal": -code}))
        return codes


def ended(folder: Path, job_id: str) -> dict[int, tuple[int, int]]:
    """The ranks of a local job that a signal ended: {rank: (pid, signal number)}."""
    out = {}
    for path in Path(folder).glob(f"{job_id}_*_signal.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            record = json.loads(path.read_text())
            out[int(path.name.split("_")[1])] = (int(record["pid"]), int(record["signal"]))
    return out


def name(signum: int) -> str:
    """SIGKILL for 9; 'signal 99' for a number that names none."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def said(signum: int, advice: str = "") -> str:
    """How a process a signal ended was ended, in words: for SIGKILL, its usual cause and what holds less."""
    if signum != signal.SIGKILL:
        return f"was killed by {name(signum)}"
    return f"was killed by SIGKILL: {OOM}" + (f"; to hold less memory, {advice}" if advice else "")


if __name__ == "__main__":
    Controller(Path(sys.argv[1])).run()
