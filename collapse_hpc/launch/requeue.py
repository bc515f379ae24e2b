"""Slurm's USR2 (preemption, the time limit): submitit's handler checkpoints, requeues the job and exits by
raising SystemExit in the main thread, wherever it is. Where that is a finalizer or a C callback (numba's
first compile runs Python code in both), Python cannot raise there: it printed "Exception ignored …
SystemExit" with a traceback in the job log, and the unit ran on though it had been requeued. The exit
is now taken at the next point Python can raise it, without the traceback. Where no requeue is left, submitit's
handler raises its error instead: it is an exit too, which no `except Exception` where the signal lands swallows."""
from __future__ import annotations

import logging
import signal
import sys
import threading

_requeued = threading.Event()  # submitit's handler has run (checkpointed, requeued): only its exit is left
RETRY_S = 0.05  # after a lost exit: the signal again, once Python has left the finalizer


def exit_where_python_can() -> None:
    """Wrap the USR2 handler submitit installed (main thread only): its exit, lost inside a finalizer or
    callback, is not shown, and the signal comes again a moment later (from a timer thread) to take it."""
    previous = signal.getsignal(signal.SIGUSR2)
    if not callable(previous) or threading.current_thread() is not threading.main_thread():
        return

    def on_usr2(signum, frame):
        if _requeued.is_set():  # the requeue is done, the exit was lost: only the exit again
            signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # a retry still on its way, once it is taken
            raise SystemExit(-1)
        try:
            previous(signum, frame)
        except SystemExit:
            _requeued.set()
            raise
        except Exception as e:  # no requeue left ("timed-out too many times"): the job ends, failed
            _requeued.set()
            # an exit, not the error: code that catches Exception where the signal lands (a log line's write)
            # swallowed the error, and the unit ran on to Slurm's kill at its time limit
            raise SystemExit(f"{type(e).__name__}: {e}") from None

    shown = sys.unraisablehook

    def unraisable(hook_args) -> None:
        if not (_requeued.is_set() and isinstance(hook_args.exc_value, SystemExit)) or \
                threading.current_thread() is not threading.main_thread():  # a handler's exit is the main thread's
            return shown(hook_args)
        logging.getLogger("collapse_hpc").info("requeued: the exit came inside %r; it is taken after it",
                                               hook_args.object)
        signal.signal(signal.SIGUSR2, on_usr2)
        retry = threading.Timer(RETRY_S, signal.pthread_kill, (threading.main_thread().ident, signal.SIGUSR2))
        retry.daemon = True
        retry.start()
        return None

    signal.signal(signal.SIGUSR2, on_usr2)
    sys.unraisablehook = unraisable
