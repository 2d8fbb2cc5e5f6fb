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
