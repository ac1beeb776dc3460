#!/usr/bin/env bash
# Install what CI and the test suite need: Debian packages and the project venv.
# Idempotent and quick on a machine where everything is already in place:
# apt is skipped when dpkg-query reports every package installed, and pip is
# skipped while pyproject.toml is unchanged since the last successful install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

PACKAGES=(
  python3-venv python3-pip python3-numpy
  docker.io openssh-server openssh-client debootstrap busybox-static
  iproute2 iptables xvfb
  libxcb-cursor0 libxcb-shape0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1
  libxcb-image0 libxcb-render-util0 libegl1 libgl1 libfontconfig1 libdbus-1-3
  desktop-file-utils appstream rsync curl ca-certificates debian-archive-keyring
  slurm-wlm munge
)

log() { printf '[setup] %s\n' "$*"; }

mkdir -p /tmp/mldesk-ci
# One setup at a time (several people/CI steps may run the test entry at once).
exec 9>/tmp/mldesk-ci/setup.lock
flock -w 900 9 || { echo "setup.sh: /tmp/mldesk-ci/setup.lock still held after 900 s" >&2; exit 1; }

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ $status == installed ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  if [[ $(id -u) != 0 ]]; then
    echo "setup.sh: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
  apt-get update -qq </dev/null 9>&-
  apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" </dev/null 9>&-   # 9>&-: services apt starts must not hold our lock
else
  log "Debian packages: all ${#PACKAGES[@]} installed"
fi

stamp=.venv/.mldesk-setup-stamp
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv"
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip </dev/null 9>&-
  rm -f "$stamp"
fi
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]] || ! .venv/bin/python -c 'import mldesk' 2>/dev/null; then
  log "pip install -e '.[test,package]'"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,package]' </dev/null 9>&-
  echo "$want" >"$stamp"
else
  log ".venv up to date"
fi
