#!/usr/bin/env bash
# Install Debian's chromium for the report's browser test (idempotent, quiet).
# Needs root; does nothing when /usr/bin/chromium is already there.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "install_chromium.sh: not root and /usr/bin/chromium missing; run: apt-get install -y chromium" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium >/dev/null
[ -x /usr/bin/chromium ]
