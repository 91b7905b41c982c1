#!/usr/bin/env bash
# Software WebGPU, so the engine's GPU path (KV cache as GPU buffers, the on-device gather, fallback)
# is tested on machines without a GPU: Mesa's lavapipe, a Vulkan driver that runs on the CPU, under
# onnxruntime-node's WebGPU provider (Dawn). Bookworm's Mesa 22 lavapipe lacks a feature Dawn requires
# (shaderUniform*ArrayDynamicIndexing), so the driver comes from bookworm-backports (Mesa 25).
#
# Nothing is installed system-wide: the packages are downloaded with a private apt state and unpacked
# under .test-artifacts/software-vulkan (idempotent; a second run only checks). Then the given command
# runs with the loader and driver on its library path, and TWISTED_SMC_REQUIRE_WEBGPU=1 so the WebGPU
# tests fail rather than skip when the adapter is missing.
#
# Usage: scripts/software-webgpu.sh [command args...]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${SOFTWARE_VULKAN_ROOT:-$repo/.test-artifacts/software-vulkan}
lib="$root/files/usr/lib/x86_64-linux-gnu"
icd="$root/lvp_icd.json"

if [ "$(uname -m)" != x86_64 ] || [ ! -r /etc/debian_version ]; then
  echo "software-webgpu: needs Debian on x86_64" >&2
  exit 2
fi

if [ ! -f "$icd" ]; then
  echo "software-webgpu: fetching Mesa's lavapipe (bookworm-backports) and the Vulkan loader into $root"
  rm -rf "$root/apt" "$root/files" "$root/debs"
  mkdir -p "$root/apt/state/lists/partial" "$root/apt/cache/archives/partial" "$root/debs" "$root/files"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  cat > "$root/apt/sources.list" <<EOF
deb [signed-by=$keyring] http://deb.debian.org/debian bookworm main
deb [signed-by=$keyring] http://deb.debian.org/debian bookworm-backports main
EOF
  apt_opts=(-o "Dir::State=$root/apt/state" -o "Dir::State::status=/var/lib/dpkg/status" -o "Dir::Cache=$root/apt/cache"
    -o "Dir::Etc::SourceList=$root/apt/sources.list" -o "Dir::Etc::SourceParts=/nonexistent" -o "APT::Sandbox::User=root" -qq)
  apt-get "${apt_opts[@]}" update
  pkgs=(libvulkan1 mesa-vulkan-drivers/bookworm-backports libdrm2/bookworm-backports libdrm-amdgpu1/bookworm-backports)
  # The driver links LLVM 15; Chromium's Mesa usually brought it, a bare machine may lack it.
  ldconfig -p | grep -q 'libLLVM-15.so.1 ' || pkgs+=(libllvm15)
  (cd "$root/debs" && apt-get "${apt_opts[@]}" download "${pkgs[@]}")
  for deb in "$root"/debs/*.deb; do dpkg-deb -x "$deb" "$root/files"; done
  # The ICD names its library by soname; point it at the unpacked file so no system path is needed.
  cat > "$icd.tmp" <<EOF
{ "file_format_version": "1.0.0", "ICD": { "library_path": "$lib/libvulkan_lvp.so", "api_version": "1.4.305" } }
EOF
  mv "$icd.tmp" "$icd"
fi

missing=$(LD_LIBRARY_PATH="$lib" ldd "$lib/libvulkan_lvp.so" | grep 'not found' || true)
if [ -n "$missing" ]; then
  echo "software-webgpu: lavapipe cannot load; missing libraries:" >&2
  echo "$missing" >&2
  exit 2
fi

export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export VK_DRIVER_FILES="$icd" VK_ICD_FILENAMES="$icd"
mkdir -p "$root/run" && chmod 700 "$root/run"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$root/run}"
export TWISTED_SMC_REQUIRE_WEBGPU=1
[ $# -eq 0 ] && exit 0
exec "$@"
