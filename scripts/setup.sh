#!/usr/bin/env bash
# Installs the Debian packages in scripts/apt-packages.txt that are missing (apt, via sudo when not
# root), then configures and builds openlm-cpp into build/ against Debian's LibTorch 1.13 (with
# OPENLM_SETUP_NO_BUILD=1: packages only). Safe to rerun: nothing is reinstalled and the build is
# incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t pkgs < <(grep -v '^\s*#' scripts/apt-packages.txt | sed '/^\s*$/d')
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -z "${OPENLM_SETUP_NO_BUILD:-}" ] || exit 0  # packages only (scripts/setup-torch2.sh)
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${OPENLM_CMAKE_ARGS:-} >/dev/null
cmake --build build -j"$jobs"
