#!/usr/bin/env bash
# How many cache-sized GPU buffers onnxruntime's WebGPU provider makes per step in opCost.ts's cases,
# counted on software Vulkan (lavapipe, scripts/software-webgpu.sh), where each new device buffer is a
# malloc that glibc serves with its own mmap once the mmap threshold is pinned. Each case runs for 20
# and for 40 steps under strace; the difference over 20 is the buffers made per step, start-up excluded.
# On the H100 a new buffer cost about 0.8 ms of CPU time (README, "On a GPU"), so this count is most of
# what a step costs there.
#
# With --model DIR it counts the engine's own decode steps instead (dist/decode-bench.js, step level,
# 16 and 32 steps after a --cache-token prompt; DIR a 12-head, 64-wide decoder such as mkmodel.py's
# with a small vocabulary), and --fixed-capacity yes keeps its cache at a fixed capacity.
#
# Usage: scripts/software-webgpu.sh bash scripts/gpu/count-buffers.sh [--storage-cache simple] [--cases a,b] [--k 16] [--cache 256]
#        scripts/software-webgpu.sh bash scripts/gpu/count-buffers.sh --model DIR [--fixed-capacity yes] [--k 16] [--cache 256]
# Needs strace, and an op-cost bundle (scripts/gpu/prepare.sh, or OPCOST_JS=path) or `npm run build`.
set -euo pipefail
js=${OPCOST_JS:-.gpu/dist/op-cost.js}
k=16 cache=256 heads=12 dim=64 layers=12 cases="attention-growing,attention-capacity,attention-same-cache,neg-fed-back" mode="" model="" fixed=no
while [ $# -gt 0 ]; do
  case $1 in
    --k) k=$2 ;; --cache) cache=$2 ;; --cases) cases=$2 ;; --storage-cache) mode=$2 ;; --model) model=$2 ;; --fixed-capacity) fixed=$2 ;;
    *) echo "count-buffers: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
command -v strace > /dev/null || { echo "count-buffers: needs strace (apt-get install strace)" >&2; exit 2; }
[ -n "$model" ] && js=dist/decode-bench.js
[ -f "$js" ] || { echo "count-buffers: no $js; run scripts/gpu/prepare.sh (or npm run build), or set OPCOST_JS" >&2; exit 2; }
# A cache tensor is k × heads × (cache + up to 64) × dim floats; count mappings from half to twice that.
bytes=$((k * heads * cache * dim * 4)); lo=$((bytes / 2)); hi=$((bytes * 2 + 64 * k * heads * dim * 4))
log=$(mktemp); trap 'rm -f "$log"' EXIT
# (A fixed-capacity cache is up to twice the prompt's length: the same range.)
made() { # buffers of the cache's size mapped in a run of $2 steps of case $1
  if [ -n "$model" ]; then
    MALLOC_MMAP_THRESHOLD_=131072 strace -f -qq -e trace=mmap -o "$log" node "$js" --model "$model" --devices webgpu --levels step --ks "$k" \
      --cache "$cache" --steps "$2" --fixed-capacity "$fixed" > /dev/null 2>&1
  else
    MALLOC_MMAP_THRESHOLD_=131072 strace -f -qq -e trace=mmap -o "$log" node "$js" --k "$k" --cache "$cache" --capacity $((cache + 64)) \
      --heads $heads --head-dim $dim --layers $layers --steps "$2" --cases "$1" ${mode:+--storage-cache "$mode"} > /dev/null 2>&1
  fi
  grep -oE 'mmap\(NULL, [0-9]+,' "$log" | grep -oE '[0-9]+' | awk -v lo=$lo -v hi=$hi '$1 >= lo && $1 <= hi' | wc -l
}
[ -n "$model" ] && cases="decode-bench"
for c in ${cases//,/ }; do
  a=$(made "$c" 20); b=$(made "$c" 40)
  how="\"storageCache\":\"${mode:-bucket}\""
  [ -n "$model" ] && how="\"fixedCapacity\":\"$fixed\""
  echo "{\"case\":\"$c\",\"k\":$k,\"cache\":$cache,$how,\"buffersMadePerStep\":$(awk -v d=$((b - a)) 'BEGIN { printf "%.2f", d / 20 }')}"
done
