"""Generic resources (gres) a profile's extra sbatch options ask for, against what the nodes offer.

sbatch --test-only answers a gres no node has (gpu:h1000:1 for gpu:h100:1) as it answers drained
nodes ("Requested node configuration is not available"), and sbatch queues such a job, which then
waits for ever; so a gres name, type or count that no node of the partition offers is refused
before anything is queued, whatever state the nodes are in.
"""
from __future__ import annotations

import re

from collapse_hpc.errors import UserError

# sbatch options naming gres: --gres=name[:type][:count],… and the GPU ones, [type:]count
GRES_KEYS = ("gres",)
GPU_KEYS = ("gpus", "gpus-per-node", "gpus-per-task", "gpus-per-socket")
PER_NODE = ("gres", "gpus-per-node")  # counts per node: one node must hold them
COUNT = re.compile(r"(\d+)([KMGT]?)")


def count(text: str) -> int | None:
    """A gres count (4, 10G); None where it is not one."""
    m = COUNT.fullmatch(text.strip().upper())
    return int(m[1]) * 1024 ** " KMGT".index(m[2] or " ") if m else None


def requested(option: str, value: str) -> list[tuple[str, str | None, int]]:
    """(name, type or None, count) of each resource an sbatch option's value asks for."""
    return [_item(("gpu:" if option in GPU_KEYS else "") + item.strip())
            for item in str(value).split(",") if item.strip() and item.strip().lower() != "none"]


def offered(gres: str) -> dict[tuple[str, str | None], int]:
    """(name, type) -> count of one node's Gres (gpu:h100:4(S:0-1),scratch:2; (null): none); each typed
    resource also counts under (name, None), which a request without a type takes."""
    out: dict[tuple[str, str | None], int] = {}
    for item in re.sub(r"\([^)]*\)", "", gres).split(","):
        if item.strip() in ("", "(null)"):
            continue
        name, typ, n = _item(item.strip())
        for key in {(name, typ), (name, None)}:
            out[key] = out.get(key, 0) + n
    return out


def _item(text: str) -> tuple[str, str | None, int]:
    """name[:type][:count] (count 1 where none is given)."""
    name, *rest = text.split(":")
    n = count(rest[-1]) if rest else None
    if n is not None:
        rest = rest[:-1]
    return name, (rest[0] if rest else None), (1 if n is None else n)


def check(prof, kind: str, where: str, members: list[dict]) -> None:
    """Every gres the jobs of `kind` ask for (the profile's and the kind's extra sbatch options) is
    offered by a node of their partitions `where` (`members`, drained ones too), in the count asked
    per node; else one line naming the profile key."""
    extra = prof.resources(kind).sbatch
    options = {**{k: (f"sbatch.{k}", v) for k, v in prof.sbatch.items()},
               **{k: (f"jobs.{kind}.sbatch.{k}", v) for k, v in extra.items()}}
    nodes = [offered(n.get("Gres", "")) for n in members]
    for key, (path, value) in options.items():
        option = key.replace("_", "-").lower()
        if option not in GRES_KEYS + GPU_KEYS:
            continue
        for name, typ, n in requested(option, value):
            have = [node.get((name, typ), 0) for node in nodes]
            per_node = n if option in PER_NODE else 1
            if max(have, default=0) < per_node:
                raise UserError(f"profile {prof.name}: {path}: {value}: " + _none(name, typ, n, have, where, nodes))


def _none(name: str, typ: str | None, n: int, have: list[int], where: str, nodes: list[dict]) -> str:
    asked = f"{name}:{typ}" if typ else name
    if max(have, default=0):
        return f"no node of partition {where} has {n} {asked} per node (at most {max(have)})"
    typed = {k for node in nodes for k in node if k[1]}
    names = {k[0] for k in typed}
    shown = sorted({f"{a}:{b}" for a, b in typed} | {a for node in nodes for a, b in node if a not in names})
    return (f"no node of partition {where} offers gres {asked} (they offer: {', '.join(shown) or 'none'}); "
            f"sbatch would queue the jobs to wait for ever")
