#!/usr/bin/env bash
# Wheels for a GPU machine that has torch and transformers but no registry: deepspeed (built here,
# it is published as source only) and submitit (the launch layer), with every need of theirs that the
# machine's image is not known to have (it has torch, numpy, ninja, psutil, tqdm and packaging), into
# .whl/ (git-ignored: name .whl in the device call's carry). typing-extensions travels too: the locked
# pydantic-core imports its Sentinel (4.14 on), and the machine's own version is not recorded.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
mkdir -p .whl  # ignored by .gitignore, so it travels to a GPU machine only when named in carry
version() { sed -n "s/^$1==\([^ ]*\).*/\1/p" requirements.lock; }
"$py" -m pip wheel -q --no-deps -w .whl "deepspeed==$(version deepspeed)"
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "hjson==$(version hjson)" "einops==$(version einops)" "msgpack==$(version msgpack)" \
  "py-cpuinfo==$(version py-cpuinfo)" "pydantic==$(version pydantic)" "pydantic-core==$(version pydantic-core)" \
  "annotated-types==$(version annotated-types)" "typing-inspection==$(version typing-inspection)" \
  "submitit==$(version submitit)" "cloudpickle==$(version cloudpickle)" \
  "typing-extensions==$(version typing-extensions)"
ls -la .whl
