#!/usr/bin/env bash
# Installs everything Berth needs on a fresh Debian 12 machine (run as root), then builds it.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  runc
  containerd
  docker-registry
  busybox-static
  protobuf-compiler
  libprotobuf-dev
  skopeo umoci
  criu                 # checkpoint/restore (its tests skip where `criu check` fails)
  util-linux
  python3 make g++     # better-sqlite3 compiles from source
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian package may start a system containerd; Berth's tests run their own private one.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet containerd 2>/dev/null; then
  systemctl stop containerd || true
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build
