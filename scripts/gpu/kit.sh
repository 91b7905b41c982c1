# Sourced by run.sh and real.sh on the GPU machine (repository root, .gpu carried): $out, the DEADLINE,
# part() (a part cut to what is left of it; SKIP="a regex" leaves out the parts whose names match), node
# and onnxruntime unpacked into $rt, the Vulkan/EGL loader for WebGPU, the card's name in $out/gpu.txt.
set -uo pipefail
out=${OUT:-gpu-results}; mkdir -p "$out"
deadline=${DEADLINE:-480}
g=.gpu
rt=/tmp/gpu-runtime; mkdir -p $rt
# Runs a part with at most $1 seconds, fewer if the deadline is near; skips it when under 20 are left.
part() {
  local want=$1 name=$2; shift 2
  if [ -n "${SKIP:-}" ] && [[ "$name" =~ $SKIP ]]; then echo "skipped $name: SKIP" | tee -a "$out/times.txt"; return; fi
  local left=$((deadline - SECONDS - 5)); local t=$((want < left ? want : left))
  if [ $t -lt 20 ]; then echo "skipped $name: ${left}s left" | tee -a "$out/times.txt"; return; fi
  local t0=$SECONDS; echo "== $name (up to ${t}s)"
  timeout $t "$@"; local rc=$?
  echo "$name: exit $rc, $((SECONDS - t0))s" | tee -a "$out/times.txt"
}
tar -xJf $g/node.tar.xz -C $rt && tar -xJf $g/node_modules.tar.xz -C $rt
# (SKIP_GL=1, a smaller V/D/L/H and OPCOST="--layers 2": a dry run of this script on a machine without the GPU.)
if [ -z "${SKIP_GL:-}" ]; then for f in $g/gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
export NODE_PATH=$rt/node_modules PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/gpu.txt" 2>&1
mkdir -p dist && cp $g/dist/cli.js dist/ && cp $g/dist/decode-bench.js $g/dist/op-cost.js $rt/
echo "setup: ${SECONDS}s" >> "$out/times.txt"
