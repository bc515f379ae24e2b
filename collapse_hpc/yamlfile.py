"""The one YAML reader of the project (configs, profiles, a run's saved config.yaml, --set values).

Bounded before anything is built from it, so a hostile or broken file is one error line, never
a crash: at most MAX_BYTES of text, MAX_VALUES values once aliases are expanded (an alias bomb
expands to gigabytes from a few hundred bytes), nesting at most MAX_DEPTH deep, no alias that
contains itself, and mapping keys that are strings (an unquoted `2024-01-01:` is a date) and are
given once (YAML would keep the last of two `gmm:` sections and silently drop the first).
Every message names the source and, where it has one, the line.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from collapse_hpc.errors import ConfigError

MAX_BYTES = 1 << 20  # the shipped configs are a few KB
MAX_VALUES = 100_000  # scalars, lists and mappings, aliases counted as often as they are used
MAX_DEPTH = 32
STR = "tag:yaml.org,2002:str"
MERGE = "tag:yaml.org,2002:merge"  # `<<: *defaults`
INT, FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
OCTAL = re.compile(r"[-+]?0[0-7]+")


def _line(node) -> str:
    mark = getattr(node, "start_mark", None)
    return f" (line {mark.line + 1})" if mark else ""


def _plain_number(node: yaml.ScalarNode, source: str) -> None:
    """YAML 1.1 reads 1:30:00 as 5400 (base 60) and 017 as 15 (octal): a Slurm time given as
    time_min: 1:30:00 would ask for 5400 minutes. Such a number is refused, not read."""
    if node.tag not in (INT, FLOAT) or node.style:  # quoted: a string
        return
    text = node.value.replace("_", "")
    if ":" in text:
        value = 0.0
        for part in text.lstrip("+-").split(":"):
            value = value * 60 + float(part)
        raise ConfigError(f"{source}{_line(node)}: {node.value} reads as a base-60 number in YAML "
                          f"({value:g}); write the number itself (time_min: 90), or quote it")
    if node.tag == INT and OCTAL.fullmatch(text):
        raise ConfigError(f"{source}{_line(node)}: {node.value} reads as an octal number in YAML "
                          f"({int(text, 8)}); write it without the leading zero, or quote it")


def _measure(root: yaml.Node, source: str) -> None:
    """Walk the composed graph as construction would expand it; stop at the first bound crossed."""
    seen = 0
    path: set[int] = set()

    def walk(node, depth: int) -> None:
        nonlocal seen
        seen += 1
        if seen > MAX_VALUES:
            raise ConfigError(f"{source}: expands to more than {MAX_VALUES} values (aliases?); not a config")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{source}{_line(node)}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, yaml.ScalarNode):
            _plain_number(node, source)
            return
        if id(node) in path:
            raise ConfigError(f"{source}{_line(node)}: an alias that contains itself")
        path.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: dict[str, yaml.Node] = {}
            for key, value in node.value:
                if not (isinstance(key, yaml.ScalarNode) and key.tag in (STR, MERGE)):
                    shown = key.value if isinstance(key, yaml.ScalarNode) else "a list or mapping"
                    raise ConfigError(f"{source}{_line(key)}: key {shown!r} is not a string "
                                      f"(quote it)")
                if key.tag == STR and key.value in keys:
                    first = keys[key.value].start_mark.line + 1
                    raise ConfigError(f"{source}{_line(key)}: key {key.value!r} given twice (first on line "
                                      f"{first}); give each key once")
                keys[key.value] = key
                walk(value, depth + 1)
        else:
            for item in node.value:
                walk(item, depth + 1)
        path.discard(id(node))

    walk(root, 0)


def loads(text: str, source: str) -> Any:
    """The value of one YAML document (None when empty), or ConfigError with one line."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source}: {len(text)} bytes, more than the {MAX_BYTES} a config may have")
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # refuses a NUL or other unprintable character at once
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, source)
        return loader.construct_document(node)
    except yaml.reader.ReaderError as e:  # a NUL, an escape code: characters YAML does not allow
        line = text.count("\n", 0, e.position) + 1
        raise ConfigError(f"{source}: not valid YAML (line {line}): character #x{e.character:02x} is not "
                          f"allowed in YAML text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    except RecursionError:  # the parser itself recurses per level of nesting
        raise ConfigError(f"{source}: nested more than {MAX_DEPTH} levels deep") from None
    finally:
        if loader is not None:
            loader.dispose()


def not_found(path: Path, what: str) -> str:
    """Why `path` is no `what` to read: a folder given where its file was meant is said as such, not
    as missing (it exists)."""
    if path.is_dir():
        return f"a folder, not a {what}: name the YAML file itself"
    if path.exists():  # /dev/null, `<(sed … demo.yaml)`'s pipe: read more than once, by name
        return f"not a plain file (a pipe or a device), which a {what} must be: write it to a file and name that"
    return f"{what} not found"


def read(path: str | Path, what: str = "config file") -> str:
    """A YAML file's text; a missing, oversized or not UTF-8 file is one line too. A read the file system
    refuses goes up as its OSError: the caller names the file as what it holds (errors.refusals)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {not_found(path, what)}")
    if path.stat().st_size > MAX_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size} bytes, more than the {MAX_BYTES} a config may have")
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (UTF-8)") from None


def load(path: str | Path, what: str = "config file") -> Any:
    """Read (read) and parse a YAML file."""
    return loads(read(path, what), str(path))


def load_mapping(path: str | Path, what: str = "config file") -> dict:
    """load() of a file whose top level must be a mapping (empty file: {})."""
    raw = load(path, what)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return raw
