"""A full disk, a quota, a read-only file system: named as such (which file, which file system, what
to do), whatever library's words the refusal came in; the atomic writes leave nothing behind."""
import errno
import os
import time
from pathlib import Path

import pytest

from collapse_hpc.store import atomic, space
from tests import helpers

# the refusals as the libraries raise them (seen on a full tmpfs): not all of them OSErrors
SAFETENSORS = "Error while serializing: I/O error: No space left on device (os error 28)"
TOKENIZERS = "No space left on device (os error 28)"
PYARROW = "Error writing bytes to file. Detail: [errno 28] No space left on device"


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, PYARROW), Exception(SAFETENSORS), Exception(TOKENIZERS),
                                   OSError(errno.EDQUOT, "Disk quota exceeded"), OSError(errno.EROFS, "")])
def test_each_refusal_is_recognised_whatever_its_type(error):
    assert space.refused(error) in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


@pytest.mark.parametrize("error", [OSError(errno.ENOENT, "No such file"), Exception("No such file (os error 2)"),
                                   RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")])
def test_other_errors_are_not_read_as_a_full_disk(error):
    assert space.refused(error) is None


def test_a_folder_written_whole_names_itself_on_a_libraries_full_disk(tmp_path):
    """safetensors and tokenizers raise their own exception types on a full disk, naming no file: the
    tokenizer's save in `data prepare` ended in a traceback and exit status 1."""
    target = tmp_path / "tokenizer-bpe8000"
    with pytest.raises(OSError) as e:
        with atomic.atomic_dir(target) as tmp:
            (tmp / "tokenizer.json").write_text("{")
            raise Exception(TOKENIZERS)
    assert (e.value.errno, e.value.filename, e.value.strerror) == (errno.ENOSPC, str(target), os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []  # the temporary folder went


def test_a_file_names_itself_in_plain_words(tmp_path):
    target = tmp_path / "metrics.parquet"
    with pytest.raises(OSError) as e:
        with atomic.atomic_path(target):
            raise OSError(errno.ENOSPC, PYARROW)
    assert str(e.value) == f"[Errno 28] No space left on device: '{target}'"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("number, meaning", [
    (errno.ENOSPC, r"the file system at {m} has no room left for it \(\d.* free of \d.* now\); free space there "
                   r"or write elsewhere"),
    (errno.EDQUOT, r"your disk quota on {m} is used up \(`quota -s`, or `lfs quota -u \$USER {m}` on Lustre, "
                   r"shows it\); free space there or write elsewhere"),
    (errno.EROFS, r"{m} is mounted read-only \(or was remounted so after a disk error\); write elsewhere, or wait "
                  r"until it is writable again")])
def test_the_line_says_which_file_system_and_what_to_do(tmp_path, number, meaning):
    import re

    target = tmp_path / "run" / "jobs.json"  # not there (yet): its file system is its folder's
    line = space.explain(OSError(number, os.strerror(number), str(target)))
    assert line.startswith(f"{target}: {os.strerror(number)}: ")
    assert line.endswith(", then run the same command again")
    mount = space.mount_point(tmp_path)
    assert os.path.ismount(mount) and tmp_path.is_relative_to(mount)
    assert re.search(meaning.format(m=re.escape(str(mount))), line), line


def test_sizes_read_as_people_write_them():
    assert [space.size(n) for n in (0, 4096, 2 << 20, 3 << 40)] == ["0 bytes", "4 KiB", "2.0 MiB", "3.0 TiB"]


def test_the_nearest_folder_above_a_path_is_found_once_for_every_caller(tmp_path, monkeypatch):
    """The mount point of a file not written yet, the folder a lock is taken on and the folder a report
    would be made in all start from the folder a path is (or would be) made in: one walk up, not three."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "jobs.json").write_text("{}")
    assert space.nearest_folder(tmp_path / "run") == tmp_path / "run"
    assert space.nearest_folder(tmp_path / "run" / "report" / "figures") == tmp_path / "run"
    assert space.nearest_folder(tmp_path / "run" / "jobs.json") == tmp_path / "run"  # a file: its folder
    assert space.nearest_folder(tmp_path / "run" / "jobs.json" / "x") == tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    assert space.nearest_folder("run/report") == Path("run")  # as given: said to the user as they wrote it
    assert space.nearest_folder("new/report") == Path(".")
    assert space.mount_point("new/report") == space.mount_point(tmp_path)


def test_the_mount_point_is_the_innermost_the_kernel_lists(tmp_path):
    # a bind mount shares its device with the mount above it: os.path.ismount missed it, and a run on
    # a read-only bind (a container's --bind src:dst:ro) was said to be on "/ mounted read-only"
    (tmp_path / "scratch dir" / "run").mkdir(parents=True)
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
                         f"90 22 8:1 /x {str(tmp_path).replace(' ', chr(92) + '040')}/scratch\\040dir ro - ext4 "
                         f"/dev/sda1 rw\n"
                         f"91 22 8:1 /y {tmp_path}/scratch ro - ext4 /dev/sda1 rw\n")
    assert space.mount_point(tmp_path / "scratch dir" / "run" / "jobs.json", mountinfo) == tmp_path / "scratch dir"
    assert space.mount_point(tmp_path / "other", mountinfo) == Path("/")
    assert space.mount_point(tmp_path, tmp_path / "no-mountinfo") == space.mount_point(tmp_path, "/nonexistent")


def test_a_read_only_bind_mount_is_named_as_the_read_only_file_system(tmp_path):
    import subprocess

    (tmp_path / "src").mkdir()
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "--bind", str(tmp_path / "src"), str(ro)], capture_output=True).returncode:
        pytest.skip("bind mounts need root")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
        assert space.mount_point(ro / "run" / "jobs.json") == ro
        assert space.state(ro) == f"{ro} is mounted read-only"
        line = space.explain(OSError(errno.EROFS, os.strerror(errno.EROFS), str(ro / "jobs.json")))
        assert f": {ro} is mounted read-only" in line, line
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_a_file_size_limit_is_named_with_what_to_do(tmp_path):
    """`ulimit -f` (which a Slurm job inherits from the submitting shell) refuses a write past it with
    EFBIG: it ended in 'File too large' alone, or in safetensors' words in a unit's FAILED line."""
    import resource
    import subprocess
    import sys

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    proc = subprocess.run([sys.executable, "-m", "collapse_hpc", "data", "prepare", "digits", "--data-dir",
                           str(tmp_path / "data")], capture_output=True, text=True, preexec_fn=limited, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "File too large: it would be larger than the file-size limit of this process (4 KiB, `ulimit -f`)" \
        in proc.stderr and "raise the limit (`ulimit -f unlimited`" in proc.stderr, proc.stderr
    assert not (tmp_path / "data" / "digits").exists()
    assert space.refused(Exception("Error while serializing: I/O error: File too large (os error 27)")) == errno.EFBIG


def test_short_of_room_weighs_what_is_still_to_write_against_the_free_space(tmp_path):
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    assert space.short_of_room(tmp_path / "run", 1024) is None
    line = space.short_of_room(tmp_path / "run" / "not-made", free + 2**45)  # a folder not made yet: its parent's
    assert " TiB still to write, more than the " in line and " free of " in line
    run = tmp_path / "resumed"
    run.mkdir()
    with open(run / "done.parquet", "wb") as f:  # a resumed run's finished units (sparse: no space taken)
        f.truncate(2**42)
    assert space.short_of_room(run, free + 2**41) is None


def test_short_of_room_walks_a_live_run_whose_folders_come_and_go(tmp_path):
    """A launch (submit while the run's jobs run) weighs what its run folder holds against the free space: walked as
    a unit's folders came and went (its register, a redo's scratch), Path.rglob listed a folder after it was gone
    and the launch stopped on "No such file or directory"."""
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "done.parquet", "wb") as f:  # sparse: no space taken
        f.truncate(2**42)
    with helpers.churning(run, "toy/base/gen_000/checkpoints/step1"):
        deadline = time.time() + 3
        while time.time() < deadline:
            assert space.short_of_room(run, free + 2**41) is None


def test_a_refusal_said_in_explains_words_is_read_back_from_the_line_alone():
    # a rank that ends on its one error line leaves no errno: the launcher reads the refusal from the words
    said = space.explain(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/scratch/run/x.parquet"))
    assert space.refused_in_words(f"… error stream:\nerror: rank 1: {said}\n") == errno.EDQUOT
    assert space.refused_in_words(space.explain(OSError(errno.ENOSPC, "x"))) == errno.ENOSPC  # no file named
    assert space.refused_in_words("error: config: a note on No space left on device handling") is None
