#!/usr/bin/env bash
# Install the Debian packages named as arguments when they are missing (idempotent; a no-op when present).
# The test suite needs a real browser (chromium, chromium-driver) and a one-node Slurm cluster (slurm-wlm,
# munge). Without root, missing packages are reported and the tests that need them are skipped.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: Debian packages missing (${missing[*]}); tests that need them will be skipped." \
       "Install them with: sudo apt-get install ${missing[*]}" >&2
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
