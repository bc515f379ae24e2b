"""Read the container recipes as data: Dockerfile instructions, the def file's sections,
the Makefile's recipes, and every pip command in any of them."""
import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"  # the runtime lock: the GPU image
DEV_LOCK = REPO / "requirements-dev.lock"  # the runtime lock's pins plus test/lint tools: make setup, CI


def lock_pins(path=LOCK) -> dict[str, str]:
    """A pip-compile lock as {normalised name: version} (its hash and comment lines skipped)."""
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if m:
            pins[normalise(m.group(1))] = m.group(2)
    return pins


def lock_hashes(path=LOCK) -> dict[str, set[str]]:
    """{normalised name: its --hash values} of a pip-compile --generate-hashes lock."""
    hashes: dict[str, set[str]] = {}
    name = None
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line)
        if m:
            name = normalise(m.group(1))
            hashes[name] = set()
        hashes_here = re.findall(r"--hash=(sha256:[0-9a-f]{64})", line)
        if hashes_here and name:
            hashes[name].update(hashes_here)
    return hashes


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dockerfile_instructions(path=REPO / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def def_sections(path=REPO / "apptainer.def") -> tuple[dict[str, str], dict[str, str]]:
    """The def file's header keywords and its %sections (name -> body text)."""
    header, sections, current = {}, {}, None
    for line in path.read_text().splitlines():
        if line.startswith("%"):
            current = line[1:].split()[0]
            sections[current] = ""
        elif current:
            sections[current] += line + "\n"
        elif ":" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition(":")
            header[key.strip()] = value.strip()
    return header, sections


def make_recipe(target: str, path=REPO / "Makefile") -> list[str]:
    """The recipe lines of `target` (tab-indented lines after `target:`)."""
    lines, inside = [], False
    for line in path.read_text().splitlines():
        if re.match(rf"^{re.escape(target)}\s*:", line):
            inside = True
            continue
        if inside:
            if line.startswith("\t"):
                lines.append(line[1:])
            elif line.strip():
                break
    return lines


def pip_commands(text: str) -> list[list[str]]:
    """Every `pip install|wheel|download …` command in shell text, as argv after the verb."""
    text = text.replace("\\\n", " ")
    cmds = []
    for part in re.split(r"&&|\|\||;|\n", text):
        m = re.search(r"\bpip3?\s+(install|wheel|download)\b(.*)", part)
        if m:
            cmds.append(shlex.split(m.group(2), comments=True))
    return cmds


# Options of pip install/wheel that take a value (the value is no package name).
_VALUED = {"-r", "--requirement", "-c", "--constraint", "-w", "--wheel-dir", "-f", "--find-links",
           "-i", "--index-url", "--extra-index-url", "-t", "--target", "--cache-dir", "--prefix",
           "--root", "--src", "--progress-bar", "--python-version", "--platform"}


def named_packages(argv: list[str]) -> list[str]:
    """Arguments of one pip command that install something by name (not a lock, not a local
    project, not a wheel file): these are what could bypass requirements.lock."""
    named, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in _VALUED:
            skip = True
            continue
        if a.startswith("-") or a.startswith("$("):
            continue
        if a in (".", "./") or a.endswith(".whl") or a.startswith(("/", "./")):
            continue
        named.append(a)
    return named


def requirement_files(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-r", "--requirement")]
