"""Which errors are the file system's refusal of a read, said by any library, and which the bytes'."""
import errno

import pytest

from collapse_hpc.store.reads import refused_read


@pytest.mark.parametrize("error, number", [
    (PermissionError(errno.EACCES, "Permission denied"), errno.EACCES),
    (OSError(errno.ESTALE, "Stale file handle"), errno.ESTALE),
    (OSError("Input/output error (os error 5)"), errno.EIO),  # safetensors past its open: the text alone
    (FileNotFoundError("No such file or directory: m.safetensors"), errno.ENOENT),  # safetensors' open
    (OSError("[Errno 13] Permission denied"), errno.EACCES),  # pyarrow's
    (OSError(errno.EINVAL, "Invalid argument"), None),  # a seek to a garbage offset: the bytes
    (OSError("failed finding central directory"), None),
    (ValueError("Expecting value: line 1 column 1 (char 0)"), None),
], ids=["EACCES", "ESTALE", "safetensors EIO", "safetensors open", "pyarrow EACCES", "EINVAL", "no errno",
        "bad JSON"])
def test_a_refused_read_is_told_from_damaged_bytes(error, number):
    assert refused_read(error) == number
