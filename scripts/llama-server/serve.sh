#!/usr/bin/env bash
# Runs llama.cpp's llama-server on a GGUF inside the Debian unstable root setup.sh builds, on
# 127.0.0.1:PORT, with the OpenAI-compatible API (/v1/completions), /tokenize and /health.
#
# The chroot only sees files under the root. Where the user may make a private mount namespace (root
# with CAP_SYS_ADMIN, as here), the GGUF's folder is bind-mounted onto the root's /srv/model in a
# namespace of the server's own, gone when it exits: nothing is copied and nothing is left behind.
# Elsewhere the GGUF is staged under the root's srv/gguf/ (a hard link on the same file system, else a
# copy; reused while unchanged; removed once its source is gone). Either way the script execs down to
# llama-server (unshare, sh, chroot all exec): the process id a caller started is the server's own, so
# SIGTERM (or SIGKILL) reaches it directly and nothing is orphaned.
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

flags=(--host 127.0.0.1 --port "$port" -np 16 -c 8192 -cb -t 2 --no-webui)
mkdir -p "$root/srv/model"
# In a private mount namespace: the GGUF's folder onto the root's /srv/model, then down to the server.
inner='mount --make-rprivate / && mount --bind "$1" "$2/srv/model" && root=$2 name=$3 && shift 3 &&
  exec chroot "$root" llama-server -m "/srv/model/$name" "$@"'
if unshare --mount sh -c 'mount --make-rprivate / && mount --bind "$1" "$1"' sh "$root/srv/model" 2>/dev/null; then
  exec unshare --mount -- sh -c "$inner" sh "$(dirname "$model")" "$root" "$(basename "$model")" "${flags[@]}" "$@"
fi

case "$model" in
  "$root"/*) inside=${model#"$root"} ;;
  *)
    mkdir -p "$root/srv/gguf"
    # Staged copies whose source is gone go first (a server still reading one keeps its open file).
    for src in "$root"/srv/gguf/*.source; do
      [ -e "$src" ] || continue
      [ -e "$(cat "$src")" ] || rm -f "$src" "${src%.source}"
    done
    inside=/srv/gguf/$(printf '%s' "$model" | sha1sum | cut -c1-12)-$(basename "$model")
    if ! cmp -s "$model" "$root$inside"; then
      # A fresh name, then a rename: a server reading the old copy is never given a half-written file.
      rm -f "$root$inside.tmp"
      ln "$model" "$root$inside.tmp" 2>/dev/null || cp "$model" "$root$inside.tmp"
      mv -f "$root$inside.tmp" "$root$inside"
    fi
    printf '%s\n' "$model" > "$root$inside.source"
    ;;
esac

exec chroot "$root" llama-server -m "$inside" "${flags[@]}" "$@"
