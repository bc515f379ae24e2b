"""A disk that fills up inside one process, from a moment on: every file then opened for writing by
its path is created, as on a real full disk, but takes no byte (its writes go to /dev/full, which
answers ENOSPC). The job's own log, open before, still takes its lines."""
import builtins
import io

FULL_AT = "LTCHAIN_FULL_DISK_AT"  # the generation of ltchain whose process finds the disk full as it ends


def fill() -> None:
    real = io.open

    def full_open(file, mode="r", *args, **kwargs):
        if isinstance(file, int) or not any(c in mode for c in "wax+"):
            return real(file, mode, *args, **kwargs)
        real(file, "a").close()
        return real("/dev/full", mode.replace("x", "w").replace("a", "w"), *args, **kwargs)

    builtins.open = io.open = full_open
