#!/usr/bin/env bash
# Runs llama.cpp's llama-server on a GGUF inside the Debian unstable root setup.sh builds, on
# 127.0.0.1:PORT, with the OpenAI-compatible API (/v1/completions), /tokenize and /health.
#
# The chroot only sees files under the root, so the GGUF is staged there first (a hard link when it is
# on the same file system, else a copy, reused while unchanged) under srv/gguf/, named after the
# file's absolute path. The script then execs chroot, which execs llama-server: the process id a caller
# started is the server's own, so SIGTERM (or SIGKILL) reaches it directly and nothing is orphaned.
#
# Flags as measured (shared docs, LLAMA-SERVER.md): 16 slots of 512 tokens with continuous batching,
# two threads, no web UI. Extra arguments are passed on after them (later flags win).
#
# Usage: scripts/llama-server/serve.sh MODEL.gguf PORT [llama-server args...]
set -euo pipefail
root=${LLAMA_SERVER_ROOT:-${HOME:-/root}/.cache/twisted-smc/llama-server-sid}
if [ $# -lt 2 ]; then
  echo "usage: $0 MODEL.gguf PORT [llama-server args...]" >&2
  exit 2
fi
model=$(realpath "$1")
port=$2
shift 2
if [ ! -f "$root/.twisted-smc-ready" ]; then
  echo "llama-server: no root at $root: run scripts/llama-server/setup.sh first" >&2
  exit 2
fi
if [ ! -f "$model" ]; then
  echo "llama-server: no model file $model" >&2
  exit 2
fi

case "$model" in
  "$root"/*) inside=${model#"$root"} ;;
  *)
    inside=/srv/gguf/$(printf '%s' "$model" | sha1sum | cut -c1-12)-$(basename "$model")
    mkdir -p "$root/srv/gguf"
    if ! cmp -s "$model" "$root$inside"; then
      # A fresh name, then a rename: a server reading the old copy is never given a half-written file.
      rm -f "$root$inside.tmp"
      ln "$model" "$root$inside.tmp" 2>/dev/null || cp "$model" "$root$inside.tmp"
      mv -f "$root$inside.tmp" "$root$inside"
    fi
    ;;
esac

exec chroot "$root" llama-server -m "$inside" --host 127.0.0.1 --port "$port" \
  -np 16 -c 8192 -cb -t 2 --no-webui "$@"
