# syntax=docker/dockerfile:1
# The GPU image of collapse-hpc: `make image` builds it, `make sif` converts it for Apptainer,
# `make image-test` builds it with podman on a stand-in base and runs a tiny config in it.
#
# Dependencies come from requirements.lock, the runtime lock (make setup and CI install
# requirements-dev.lock: the same pins plus test and lint tools, which stay out of this image),
# with one exception: torch. The lock pins the CPU wheel; here the base image already carries
# the CUDA build of that same torch version, and the build fails if the two differ (unless
# TORCH_GUARD=warn: a base image such as NGC PyTorch keeps its own torch, the mismatch printed).
# Everything else in the lock is downloaded against its locked hash and installed unchanged
# (tests/containers/ checks this).

# A CUDA build of the locked torch version. Older drivers (< 580, CUDA 12): pass a cuda12.x
# tag of the same torch version, e.g. make image BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime

# ---- stage 1: wheels for every locked package (deepspeed is an sdist) ----
# Build tools, the pip cache and the lock stay here; the runtime stage only mounts the finished
# wheels, so none of them ends up in a layer of the final image.
FROM ${BASE_IMAGE} AS wheels
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY requirements.lock ./
# The lock without torch's entry (its line and its hash lines: the base image's CUDA torch
# stands in for it).
RUN awk '/^torch==/ {skip = 1; next} skip && /^[[:space:]]/ {next} {skip = 0; print}' requirements.lock \
        > /requirements.cuda.txt \
    && grep -q -E '^torch==' requirements.lock
# Every download is checked against the lock's hashes. The runtime stage installs these wheels
# by their pins alone (deepspeed's wheel is built here from its checked sdist: no locked hash).
# NGC PyTorch images pin their own packages through PIP_CONSTRAINT: here the lock decides.
RUN --mount=type=cache,target=/root/.cache/pip \
    env -u PIP_CONSTRAINT python -m pip wheel --disable-pip-version-check --require-hashes --no-deps \
        -w /wheels -r /requirements.cuda.txt \
    && grep -E '^[A-Za-z0-9]' /requirements.cuda.txt | cut -d' ' -f1 > /wheels/requirements.cuda.txt

# ---- stage 2: the project's own wheel ----
# Apart from the locked wheels, so that a change of the code rebuilds only this stage and the
# one layer that installs its wheel. On top of stage 1, so that a change of the lock rebuilds
# both: podman (buildah 1.28) cannot mount a stage that it took whole from its cache into a
# step that it runs.
FROM wheels AS project
WORKDIR /src
COPY pyproject.toml README.md ./
COPY collapse_hpc ./collapse_hpc
RUN --mount=type=cache,target=/root/.cache/pip \
    env -u PIP_CONSTRAINT python -m pip wheel --disable-pip-version-check --no-deps -w /project . \
    && sha256sum /project/*.whl > /project/SHA256SUMS

# ---- stage 3: the runtime image ----
FROM ${BASE_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# NCCL between nodes (InfiniBand, RoCE) needs the verbs libraries: NGC images have them,
# pytorch/pytorch's runtime images do not. Left unpinned: their versions are the base
# distribution's own (Ubuntu or Debian, whichever the base image is).
# grep reads the whole listing (no -q): under pipefail, an early exit could kill ldconfig with
# SIGPIPE and read as "missing".
# hadolint ignore=DL3008
RUN if ! ldconfig -p | grep 'libibverbs\.so\.1 ' >/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends libibverbs1 ibverbs-providers librdmacm1 \
        && apt-get clean && rm -rf /var/lib/apt/lists/*; \
    fi

# The lock stays in the image as the record of its pins. Copied, not mounted: a changed lock
# then changes this layer, so every builder (podman's too) reinstalls the wheels below.
COPY requirements.lock /opt/collapse-hpc/requirements.lock
# exact: the base image's torch must be the locked version; warn: keep it, print the mismatch.
ARG TORCH_GUARD=exact
# --no-index: only the wheels built from the lock, so a package missing from the lock fails
# the build here instead of being fetched unpinned. Then two guards: every locked package is
# installed at its locked version (the base image's own copies included), and the base
# image's CUDA torch is the locked torch version (TORCH_GUARD).
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    env -u PIP_CONSTRAINT python -m pip install --disable-pip-version-check --no-cache-dir --no-index \
        --find-links /wheels -r /wheels/requirements.cuda.txt \
    && python -c "import sys, importlib.metadata as md; pins = [l.split('#')[0].strip().split('==') for l in open(sys.argv[1])]; bad = [f'{n}=={v} (installed {md.version(n)})' for n, v in (p for p in pins if len(p) == 2) if md.version(n) != v]; sys.exit(f'not the locked versions: {bad}' if bad else 0)" /wheels/requirements.cuda.txt \
    && python -c "import sys, torch; locked, guard = sys.argv[1:]; v = torch.__version__; same = v.split('+')[0] == locked; guard in ('exact', 'warn') or sys.exit(f'TORCH_GUARD={guard}: exact or warn'); print(f'torch {v} from the base image, locked {locked}' + ('' if same else ': MISMATCH, kept (TORCH_GUARD=warn)' if guard == 'warn' else ': MISMATCH')); sys.exit(0 if same or guard == 'warn' else f'base image torch {v} != locked torch {locked} (make image TORCH_GUARD=warn keeps the base image torch)')" \
        "$(sed -n 's/^torch==\([^+ ]*\).*/\1/p' /opt/collapse-hpc/requirements.lock)" "${TORCH_GUARD}"

# Jobs run as an unprivileged user (Apptainer runs as the calling user anyway). Ubuntu 24.04
# based images (recent NGC PyTorch) already have a user `ubuntu` with uid and gid 1000: it goes.
# Every writable path is a folder meant to be bound: the HF cache, run folders and data under
# /workspace, compiled torch extensions under the HF cache.
RUN user="$(getent passwd 1000 || true)" && { [ -z "$user" ] || userdel --remove "${user%%:*}"; } \
    && group="$(getent group 1000 || true)" && { [ -z "$group" ] || groupdel "${group%%:*}"; } \
    && groupadd --gid 1000 collapse \
    && useradd --create-home --uid 1000 --gid 1000 --shell /bin/bash collapse \
    && mkdir -p /hf-cache /workspace \
    && chown collapse:collapse /hf-cache /workspace

# The project's wheel, through a mount; the copied checksum changes with the wheel, so no
# builder reuses this layer for other code, and the mounted wheel is checked against it.
COPY --from=project /project/SHA256SUMS /opt/collapse-hpc/wheel.sha256
RUN --mount=type=bind,from=project,source=/project,target=/project \
    sha256sum --check --quiet /opt/collapse-hpc/wheel.sha256 \
    && python -m pip install --disable-pip-version-check --no-cache-dir --no-index --no-deps /project/*.whl
COPY --chown=collapse:collapse configs /opt/collapse-hpc/configs

ARG VERSION=0.0.0
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="collapse-hpc" \
      org.opencontainers.image.description="Model-collapse experiments (Shumailov et al.) as resumable HPC batch jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="MIT"

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
