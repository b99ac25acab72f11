#!/usr/bin/env bash
# Installs IPA-bench and everything its workflow and tests use, on a fresh Debian/Ubuntu machine
# with Python >= 3.11. Safe to re-run. Set IPA_NO_APT=1 to skip the system packages.
set -euo pipefail
cd "$(dirname "$0")"

if [ -z "${IPA_NO_APT:-}" ] && ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  # Debian's package starts a system service on :9090; the benchmark runs its own servers.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
fi

python3 -m pip install -q --upgrade pip
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e ".[all]"
echo "install.sh: ok ($(python3 -c 'import ipa; print("ipa", ipa.__version__)'), $(prometheus --version 2>&1 | head -1))"
