# syntax=docker/dockerfile:1
# The GPU image of collapse-hpc: `make image` builds it, `make sif` converts it for Apptainer.
#
# Dependencies come from requirements.lock, the runtime lock (make setup and CI install
# requirements-dev.lock: the same pins plus test and lint tools, which stay out of this image),
# with one exception: torch. The lock pins the CPU wheel; here the base image already carries
# the CUDA build of that same torch version, and the build fails if the two differ. Everything
# else in the lock is downloaded against its locked hash and installed unchanged
# (tests/containers/ checks this).

# A CUDA build of the locked torch version. Older drivers (< 580, CUDA 12): pass a cuda12.x
# tag of the same torch version, e.g. make image BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime

# ---- stage 1: wheels for every locked package (deepspeed is an sdist) and the project ----
# Build tools, the pip cache and the source tree stay here; the runtime stage only mounts
# the finished wheels, so none of them ends up in a layer of the final image.
FROM ${BASE_IMAGE} AS wheels
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY collapse_hpc ./collapse_hpc
# The lock without torch's entry (its line and its hash lines: the base image's CUDA torch
# stands in for it).
RUN awk '/^torch==/ {skip = 1; next} skip && /^[[:space:]]/ {next} {skip = 0; print}' requirements.lock \
        > /requirements.cuda.txt \
    && grep -q -E '^torch==' requirements.lock
# Every download is checked against the lock's hashes. The runtime stage installs these wheels
# by their pins alone (deepspeed's wheel is built here from its checked sdist: no locked hash).
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip wheel --disable-pip-version-check --require-hashes --no-deps -w /wheels -r /requirements.cuda.txt \
    && python -m pip wheel --disable-pip-version-check --no-deps -w /wheels . \
    && grep -E '^[A-Za-z0-9]' /requirements.cuda.txt | cut -d' ' -f1 > /wheels/requirements.cuda.txt

# ---- stage 2: the runtime image ----
FROM ${BASE_IMAGE} AS runtime
ARG VERSION=0.0.0
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="collapse-hpc" \
      org.opencontainers.image.description="Model-collapse experiments (Shumailov et al.) as resumable HPC batch jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="MIT"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY requirements.lock /tmp/requirements.lock
# --no-index: only the wheels built from the lock, so a package missing from the lock fails
# the build here instead of being fetched unpinned. Then two guards: every locked package is
# installed at its locked version (the base image's own copies included), and the base
# image's CUDA torch is the locked torch version.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    python -m pip install --disable-pip-version-check --no-cache-dir --no-index --find-links /wheels \
        -r /wheels/requirements.cuda.txt /wheels/collapse_hpc-*.whl \
    && python -c "import sys, importlib.metadata as md; pins = [l.split('#')[0].strip().split('==') for l in open(sys.argv[1])]; bad = [f'{n}=={v} (installed {md.version(n)})' for n, v in (p for p in pins if len(p) == 2) if md.version(n) != v]; sys.exit(f'not the locked versions: {bad}' if bad else 0)" /wheels/requirements.cuda.txt \
    && python -c "import sys, torch; v = torch.__version__.split('+')[0]; sys.exit(0 if v == sys.argv[1] else f'base image torch {v} != locked torch {sys.argv[1]}')" "$(sed -n 's/^torch==\([^+ ]*\).*/\1/p' /tmp/requirements.lock)" \
    && rm /tmp/requirements.lock

# Jobs run as an unprivileged user (Apptainer runs as the calling user anyway). Every
# writable path is a folder meant to be bound: the HF cache, run folders and data under
# /workspace, compiled torch extensions under the HF cache.
RUN useradd --create-home --uid 1000 --shell /bin/bash collapse \
    && mkdir -p /hf-cache /workspace \
    && chown collapse:collapse /hf-cache /workspace
COPY --chown=collapse:collapse configs /opt/collapse-hpc/configs

# DL3064 reads "TOKEN" in TOKENIZERS_PARALLELISM as a secret; no secret is set here.
# hadolint ignore=DL3064
ENV PYTHONNOUSERSITE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/hf-cache \
    TORCH_EXTENSIONS_DIR=/hf-cache/torch_extensions \
    NUMBA_CACHE_DIR=/hf-cache/numba \
    TOKENIZERS_PARALLELISM=false \
    MPLBACKEND=Agg \
    COLLAPSE_HPC_GIT_COMMIT=${GIT_COMMIT}

USER 1000:1000
WORKDIR /workspace
ENTRYPOINT ["collapse-hpc"]
CMD ["--help"]
