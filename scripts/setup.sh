#!/usr/bin/env bash
# Set up what the project needs on a fresh Debian or Ubuntu machine, idempotently:
# redis-server and valkey-server (from the system's packages) and the Python environment.
# Every make target that needs them runs this first; a second run changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

# The two engines (docs/engines.md), each from the system's packages: redis-server and
# valkey-server with their CLIs. Debian 13 has both in main (Redis 8.0, Valkey 8.1); Debian 12
# has Redis 7.0 in main and Valkey 8.0 in bookworm-backports, whose sources entry is added
# here (on the machine's own mirror) when no entry names it. Only what is missing is installed.
engine_packages=()
for pair in redis-server:redis-cli valkey-server:valkey-cli; do
  server=${pair%%:*} cli=${pair##*:}
  if ! command -v "$server" >/dev/null 2>&1 || ! command -v "$cli" >/dev/null 2>&1; then
    engine_packages+=("$server" "${server%-server}-tools")
  fi
done
if [ "${#engine_packages[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    os_id=$(. /etc/os-release && echo "${ID:-}")
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    if [ "$os_id" = debian ] && [ "$codename" = bookworm ] \
      && [[ " ${engine_packages[*]} " == *" valkey-server "* ]] \
      && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      # The mirror the machine's bookworm entry already uses (deb822 or one-line form).
      mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
      if [ -z "$mirror" ]; then
        mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
      fi
      mirror=${mirror:-http://deb.debian.org/debian}
      echo "setup: adding bookworm-backports ($mirror) for valkey-server" >&2
      if [ -e /etc/apt/sources.list.d/debian.sources ]; then
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
          "$mirror" >/etc/apt/sources.list.d/debian-backports.sources
      else
        echo "deb $mirror bookworm-backports main" >/etc/apt/sources.list.d/debian-backports.list
      fi
    fi
    apt-get update -qq
    installable=()
    for package in "${engine_packages[@]}"; do
      # Not `apt-cache ... | grep -q`: under pipefail, grep's early exit fails the pipe.
      policy=$(apt-cache policy "$package" 2>/dev/null || true)
      if [[ "$policy" == *"Candidate: "[0-9]* ]]; then
        installable+=("$package")
      else
        echo "setup: $package is not in this system's packages; the tests on that engine will fail" >&2
      fi
    done
    if [ "${#installable[@]}" -gt 0 ]; then
      echo "setup: installing ${installable[*]} from the system's packages" >&2
      apt-get install -y -qq "${installable[@]}" >/dev/null
    fi
  else
    echo "setup: missing ${engine_packages[*]}; install them with: sudo apt-get install ${engine_packages[*]} (Debian 12: valkey from bookworm-backports)" >&2
    if ! command -v redis-server >/dev/null 2>&1; then exit 1; fi
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
