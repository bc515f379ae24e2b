"""numba's cache of the gmm kernels, read before a part's first fit.

numba keeps each compiled kernel as pickled files beside the source (or in NUMBA_CACHE_DIR); one cut short or
garbage (a node's crash after numba's write, a copy of the environment stopped) failed every fit of every later
part with pickle's own error ("pickle data was truncated"), until someone found and removed it by hand. A kernel
whose cache does not read is emptied here, and numba compiles it again.
"""
from __future__ import annotations

import logging
from pathlib import Path

from numba.core.dispatcher import Dispatcher

from collapse_hpc.errors import RERUN, UserError, first_line

log = logging.getLogger("collapse_hpc")


def kernels() -> list[Dispatcher]:
    """Every cached numba kernel of the gmm experiment."""
    from collapse_hpc.experiments.gmm import em, kmeans, metrics, mixture, passes

    found = {id(v): v for m in (em, kmeans, metrics, mixture, passes) for v in vars(m).values()
             if isinstance(v, Dispatcher)}  # by identity: the modules import each other's
    return list(found.values())


def unreadable(kernel: Dispatcher) -> tuple[list[Path], str] | None:
    """A kernel's cached data files that do not read as numba reads them, and why; None where all do (or none are
    there). An index that does not read names no file: emptying it is enough."""
    files = getattr(kernel._cache, "_cache_file", None)
    if files is None:  # numba's NullCache: nothing cached
        return None
    try:
        names = list(files._load_index().values())
    except (OSError, AttributeError):  # a read refused (numba says it as it would have), or a numba without this API
        return None
    except Exception as e:  # pickle's errors, EOFError, garbage: the bytes
        return [], first_line(e)
    bad, why = [], ""
    for name in names:
        try:
            files._load_data(name)
        except OSError:
            continue
        except Exception as e:
            bad, why = [*bad, Path(files._data_path(name))], why or first_line(e)
    return (bad, why) if why else None


def heal() -> list[str]:
    """Empty the cache of each kernel whose cached files do not read, those files removed (numba saves a kernel's
    index before its data: a part beside this one that read the new index would read the old file), and numba
    compiles it again at its first call; the names of those emptied. A cache that cannot be emptied (a read-only
    image) is one error line."""
    emptied = []
    for kernel in kernels():
        found = unreadable(kernel)
        if found is None:
            continue
        try:
            kernel._cache.flush()
            for path in found[0]:
                path.unlink(missing_ok=True)
        except OSError as e:
            raise UserError(f"{kernel._cache._cache_path}: numba's cache of gmm kernel {kernel.__name__} does not "
                            f"read ({found[1]}) and cannot be emptied ({e.strerror or e}): remove its files "
                            f"{kernel.__name__}-*.nb?, then {RERUN}") from None
        log.warning("warning: gmm: numba's cache of kernel %s does not read (%s): compiled again", kernel.__name__,
                    found[1])
        emptied.append(kernel.__name__)
    return emptied
