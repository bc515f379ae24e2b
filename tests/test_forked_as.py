"""tests.helpers.forked_as, the child process that became another user in the tests of what a colleague may do: it
imports what the tests had not imported before its fork (the interpreter may lie where only root may read, as under
/root), and is refused what that user may not read."""
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import ended, forked_as, nobody

UNUSED = ("colorsys", "wave", "netrc", "graphlib", "tabnanny")  # standard modules neither the tool nor tests import


def test_a_child_as_another_user_imports_a_standard_module_not_imported_before_its_fork():
    """A test run alone failed where a child imported a standard module no earlier test had: 'No module named
    hashlib' (its folder not readable by the user), the child's command ending without a word."""
    user = nobody()
    name = next((n for n in UNUSED if n not in sys.modules), None)
    if name is None:
        pytest.skip("every candidate module is imported already")
    assert ended(forked_as(user, lambda: importlib.import_module(name).__name__)) == name
    assert name not in sys.modules


def test_a_child_as_another_user_is_that_user_and_may_not_read_roots_files():
    user = nobody()
    top = Path(tempfile.mkdtemp(prefix="collapse-hpc-roots-"))
    try:
        top.chmod(0o755)
        (top / "own").write_text("root's")
        (top / "own").chmod(0o600)
        said = ended(forked_as(user, lambda: f"{os.getuid()} {os.geteuid()} {(top / 'own').read_text()}"))
        assert said == f"PermissionError: [Errno 13] Permission denied: '{top / 'own'}'"
        assert ended(forked_as(user, lambda: f"{os.getuid()} {os.geteuid()} {os.getegid()}")) == (
            f"{user.pw_uid} {user.pw_uid} {user.pw_gid}")
    finally:
        shutil.rmtree(top)
