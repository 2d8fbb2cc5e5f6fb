#!/usr/bin/env bash
# Set up what the project needs on a fresh Debian or Ubuntu machine, idempotently:
# redis-server (from the system's packages) and the Python environment (uv, .venv).
# Every make target that needs them runs this first; a second run changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing redis-server and redis-tools from the system's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq redis-server redis-tools >/dev/null
  else
    echo "setup: redis-server is missing; install it with: sudo apt-get install redis-server redis-tools" >&2
    exit 1
  fi
fi

if ! command -v uv >/dev/null 2>&1; then
  echo "setup: installing uv (the Python package manager) with pip" >&2
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  export PATH="$HOME/.local/bin:$PATH"
fi
uv sync --frozen --quiet

# checkov, the policy scanner the chart tests run on every stack's manifests
# (tests/charts/test_checkov.py). Its pinned dependencies conflict with the project's lock
# (pulumi needs a newer `packaging`), so it gets an environment of its own, pinned here.
CHECKOV_VERSION=3.3.30
if [ "$(.venv-checkov/bin/checkov --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
  echo "setup: installing checkov $CHECKOV_VERSION into .venv-checkov" >&2
  uv venv --quiet --allow-existing .venv-checkov
  uv pip install --quiet --python .venv-checkov/bin/python "checkov==$CHECKOV_VERSION"
fi

# PostgreSQL's server binaries, for the database tests: they start a private server of
# their own from /usr/lib/postgresql/<N>/bin (tests/services/db/postgres.py) and need no
# system cluster. Debian's package is enough; without root, say how to get it.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing postgresql from the system's packages (for the database tests)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
  else
    echo "setup: PostgreSQL is missing, so the database tests will fail; install it with: sudo apt-get install postgresql" >&2
  fi
fi

# The deploy rehearsal (`make rehearse`, tests/rehearsal): rootful podman with runc (crun
# fails on some VMs), netavark + aardvark-dns for the rehearsal's network and its DNS names,
# iptables/nftables for netavark's rules, and debootstrap for the base images (no registry
# is reachable, so they are built from Debian's packages). Only what is missing is installed.
rehearsal_packages=(podman runc conmon catatonit netavark aardvark-dns iptables nftables slirp4netns uidmap debootstrap)
missing=()
for package in "${rehearsal_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} from the system's packages (for the deploy rehearsal)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: the deploy rehearsal needs ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
  fi
fi
