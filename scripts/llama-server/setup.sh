#!/usr/bin/env bash
# llama.cpp's OpenAI-compatible server (llama-server) for the remote-backend tests, offline from Debian.
#
# Debian unstable's llama.cpp-tools and python3-gguf need a newer C library than bookworm's, so they
# live in a minimal Debian unstable root built with bookworm's mmdebstrap, from Debian's archive only,
# kept outside the repository. The server and the GGUF converter (to_gguf.py) run in it via chroot
# (serve.sh). Idempotent: the root is built the first time only (about 1–2 minutes, ~300 MB); a second
# run only checks it. Needs root (mmdebstrap's root mode and chroot) on Debian x86_64.
#
# Usage: scripts/llama-server/setup.sh [--if-possible]   (root: ${LLAMA_SERVER_ROOT:-~/.cache/twisted-smc/llama-server-sid})
# --if-possible: where it cannot be built at all (not root, not Debian x86_64) say so and exit 0, so
# that `npm test` runs elsewhere with those tests skipped; a build that fails still fails.
set -euo pipefail
soft=0
if [ "${1:-}" = --if-possible ]; then soft=1; fi
cannot() {
  echo "llama-server setup: $1" >&2
  if [ $soft = 1 ]; then
    echo "llama-server setup: the openai-backend tests will skip (TWISTED_SMC_REQUIRE_LLAMA_SERVER=1 makes them fail instead)" >&2
    exit 0
  fi
  exit 2
}
root=${LLAMA_SERVER_ROOT:-${HOME:-/root}/.cache/twisted-smc/llama-server-sid}
mirror=${LLAMA_SERVER_MIRROR:-http://deb.debian.org/debian}
packages=llama.cpp-tools,python3-gguf,python3-numpy
ready="$root/.twisted-smc-ready"

if [ "$(uname -m)" != x86_64 ] || [ ! -r /etc/debian_version ]; then cannot "needs Debian on x86_64"; fi
if [ "$(id -u)" != 0 ]; then cannot "needs root (mmdebstrap's root mode, chroot)"; fi

if [ ! -f "$ready" ]; then
  if ! command -v mmdebstrap >/dev/null; then
    echo "llama-server setup: installing mmdebstrap (bookworm)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
  fi
  echo "llama-server setup: building a Debian unstable root with $packages into $root (1–2 minutes)"
  start=$(date +%s)
  # Build beside the final path and move it in at the end, so an interrupted build never looks ready.
  rm -rf "$root.partial"
  mkdir -p "$(dirname "$root")"
  # Unstable's Release file is short-lived and can look expired against a machine's clock.
  mmdebstrap --quiet --variant=apt --include="$packages" \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    sid "$root.partial" "$mirror"
  rm -rf "$root"
  mv "$root.partial" "$root"
  date -u +%FT%TZ > "$ready"
  echo "llama-server setup: built in $(( $(date +%s) - start )) s, $(du -sh "$root" | cut -f1)"
fi

if ! version=$(chroot "$root" llama-server --version 2>&1) ||
   ! chroot "$root" python3 -c 'import gguf, numpy' 2>&1; then
  echo "llama-server setup: the root at $root is broken (remove it and rerun):" >&2
  echo "$version" >&2
  exit 2
fi
echo "llama-server setup: $root ready; $(echo "$version" | grep -m1 -i version || echo "$version" | head -1)"
