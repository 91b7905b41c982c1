#!/usr/bin/env bash
# Converts a Llama model folder in the shipped model's layout into a GGUF (to_gguf.py), running the
# converter inside the root setup.sh builds (python3-gguf). The chroot only sees files under the root,
# so the folder's files are copied into a private directory there and the GGUF is moved out.
#
# Usage: scripts/llama-server/convert.sh MODEL_DIR OUT.gguf
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${LLAMA_SERVER_ROOT:-${HOME:-/root}/.cache/twisted-smc/llama-server-sid}
if [ $# -ne 2 ]; then
  echo "usage: $0 MODEL_DIR OUT.gguf" >&2
  exit 2
fi
src=$1
out=$2
if [ ! -f "$root/.twisted-smc-ready" ]; then
  echo "to_gguf: no root at $root: run scripts/llama-server/setup.sh first" >&2
  exit 2
fi
work=$(mktemp -d "$root/tmp/to-gguf.XXXXXX")
trap 'rm -rf "$work"' EXIT
for f in config.json tokenizer.json tokenizer_config.json generation_config.json model.safetensors; do
  [ -f "$src/$f" ] && cp "$src/$f" "$work/"
done
cp "$here/to_gguf.py" "$work/"
inside=${work#"$root"}
chroot "$root" python3 "$inside/to_gguf.py" "$inside" "$inside/model.gguf"
mkdir -p "$(dirname "$out")"
mv "$work/model.gguf" "$out.tmp"
mv -f "$out.tmp" "$out"
