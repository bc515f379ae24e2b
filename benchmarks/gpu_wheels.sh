#!/usr/bin/env bash
# Wheels for a GPU machine that has torch and transformers but no registry: deepspeed (built here,
# it is published as source only), its pure-Python needs and submitit (the launch layer), into .whl/
# (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo /.whl/ >>.git/info/exclude; }
version() { sed -n "s/^$1==\([^ ]*\).*/\1/p" requirements.lock; }
"$py" -m pip wheel -q --no-deps -w .whl "deepspeed==$(version deepspeed)"
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "hjson==$(version hjson)" "pydantic==$(version pydantic)" "pydantic-core==$(version pydantic-core)" \
  "annotated-types==$(version annotated-types)" "typing-inspection==$(version typing-inspection)" \
  "submitit==$(version submitit)" "cloudpickle==$(version cloudpickle)"
ls -la .whl
