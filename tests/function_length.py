"""Fail when a function under the given folders is longer than --max lines (make lint).

A function's length is counted from its `def` line to its last line, docstring, comments and
blank lines inside it included (decorators not); a nested function counts inside its outer one
and on its own. Prints one `path:line: name is N lines (max M)` per offender, exit status 1.

  python tests/function_length.py --max 40 collapse_hpc/experiments/lm
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def long_functions(path: Path, limit: int) -> list[tuple[int, str, int]]:
    """(line, qualified name, length) of every function in `path` longer than `limit` lines."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}."
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = child.end_lineno - child.lineno + 1
                if length > limit:
                    found.append((child.lineno, name[:-1], length))
            visit(child, name)

    visit(ast.parse(path.read_text(), str(path)), "")
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max", type=int, default=40, help="longest function allowed, in lines")
    p.add_argument("folders", nargs="+", type=Path)
    a = p.parse_args(argv)
    bad = 0
    for folder in a.folders:
        for path in sorted(folder.rglob("*.py")) if folder.is_dir() else [folder]:
            for line, name, length in long_functions(path, a.max):
                print(f"{path}:{line}: {name} is {length} lines (max {a.max})")
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
