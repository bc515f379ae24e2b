"""This machine's pip settings for a container build: a pip.conf and read-only mounts.

pip inside `podman build` reaches the package registry only with the host's CA bundle and
settings (its config files and PIP_* variables, as `pip config list` shows them). They are given
to every RUN step as read-only volumes, so none of them lands in an image layer:

    pip config list | python tests/containers/image/pip_settings.py DIR [--registry-only]

writes DIR/pip.conf (the merged settings, mounted at /etc/pip.conf) and prints one podman
`--volume` value a line: that file, and every existing file or folder the settings name
(CA bundle, constraints, find-links, file:// indexes), each at its own path.

buildah leaves an empty file or folder in the layer where it mounted a volume whose target was
missing. --registry-only keeps the image clean of those: it drops what names local files and
folders (mirrors, constraints), except the CA bundle, whose path base images have already; pip
then reaches the package registry alone. Its pip.conf leaves an empty /etc/pip.conf behind.
"""
from __future__ import annotations

import ast
import configparser
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

LINE = re.compile(r"^(?P<section>[\w-]+|:env:)\.(?P<key>[\w-]+)=(?P<value>.+)$")
CA_VARIABLES = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")  # where pip's cert may come from


def parse(listing: str) -> dict[str, dict[str, str]]:
    """`pip config list` -> {section: {key: value}}; PIP_* variables (`:env:`) win over every
    file, as they do for pip itself, so they go to [global] and replace the key elsewhere."""
    sections: dict[str, dict[str, str]] = {}
    env: dict[str, str] = {}
    for line in listing.splitlines():
        m = LINE.match(line.strip())
        if not m:
            continue
        value = ast.literal_eval(m["value"])  # pip prints repr(value)
        if m["section"] == ":env:":
            env[m["key"]] = value
        else:
            sections.setdefault(m["section"], {})[m["key"]] = value
    for key, value in env.items():
        for values in sections.values():
            values.pop(key, None)
        sections.setdefault("global", {})[key] = value
    return {name: values for name, values in sections.items() if values}


def with_ca_bundle(sections: dict[str, dict[str, str]], environ=os.environ) -> dict[str, dict[str, str]]:
    """pip trusts its own certifi bundle unless told otherwise: carry the host's CA bundle as
    `cert` when only SSL_CERT_FILE or REQUESTS_CA_BUNDLE name it."""
    if not any("cert" in values for values in sections.values()):
        bundle = next((environ[v] for v in CA_VARIABLES if environ.get(v)), None)
        if bundle:
            sections.setdefault("global", {})["cert"] = bundle
    return sections


INDEX_KEYS = ("index-url", "extra-index-url")  # a local index's pages link to files beside it (../../files/)


def host_paths(sections: dict[str, dict[str, str]]) -> list[str]:
    """Existing absolute paths named by the settings (file:// URLs included; for a local index,
    the folder that holds it), outermost only."""
    found = set()
    for values in sections.values():
        for key, value in values.items():
            for token in value.split():
                path = urlparse(token).path if token.startswith("file://") else token
                if key in INDEX_KEYS and token.startswith("file://"):
                    path = os.path.dirname(os.path.normpath(path))
                if path.startswith("/") and Path(path).exists():
                    found.add(os.path.normpath(path))
    return sorted(p for p in found if not any(p.startswith(q + "/") for q in found))


def registry_only(sections: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The settings without local files and folders (cert kept): tokens that are absolute paths
    or file:// URLs go, and a key left with none goes too."""
    kept: dict[str, dict[str, str]] = {}
    for name, values in sections.items():
        for key, value in values.items():
            tokens = value.split() if key != "cert" else [value]
            remote = [t for t in tokens if key == "cert" or not (t.startswith("/") or t.startswith("file://"))]
            if remote:
                kept.setdefault(name, {})[key] = " ".join(remote)
    return kept


def write(sections: dict[str, dict[str, str]], folder: Path) -> list[str]:
    """Write folder/pip.conf; return the --volume values (all read-only)."""
    conf = configparser.ConfigParser(interpolation=None)
    for name, values in sections.items():
        conf[name] = values
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pip.conf"
    with path.open("w") as f:
        conf.write(f)
    return [f"{path}:/etc/pip.conf:ro"] + [f"{p}:{p}:ro" for p in host_paths(sections)]


def main(argv: list[str]) -> int:
    folders = [a for a in argv if a != "--registry-only"]
    if len(folders) != 1 or len(argv) - len(folders) > 1:
        print("usage: pip config list | python tests/containers/image/pip_settings.py DIR [--registry-only]",
              file=sys.stderr)
        return 2
    sections = with_ca_bundle(parse(sys.stdin.read()))
    if "--registry-only" in argv:
        sections = registry_only(sections)
    for volume in write(sections, Path(folders[0])):
        print(volume)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
