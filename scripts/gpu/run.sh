#!/usr/bin/env bash
# On the GPU machine, in the repository root with .gpu carried (about 8 minutes):
#  1. the WebGPU test suite on the real GPU (GPU-vs-CPU logits, on-device gathers, toy-model statistics);
#  2. a GPT-2-small-shaped decoder with random weights (mkmodel.py), in fp32 and fp16 (same seed), with
#     PyTorch CUDA eager timed on the same weights and loop;
#  3. the engine's twisted SMC decode loop on WebGPU (fp32 and fp16, logits checked against the fp32
#     model on the CPU first) and on the CPU.
# Results in $OUT (or ./gpu-results/): gpu.txt, webgpu-tests.txt, torch-cuda.txt, decode-bench*.jsonl.
set -uo pipefail
out=${OUT:-gpu-results}; mkdir -p "$out"
g=.gpu
rt=/tmp/gpu-runtime; mkdir -p $rt
tar -xJf $g/node.tar.xz -C $rt && tar -xJf $g/node_modules.tar.xz -C $rt
# (SKIP_GL=1 and a smaller V/D/L/H: a dry run of this script on a machine without the GPU.)
if [ -z "${SKIP_GL:-}" ]; then for f in $g/gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
export NODE_PATH=$rt/node_modules
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/gpu.txt" 2>&1
mkdir -p dist && cp $g/dist/cli.js dist/

echo "== WebGPU test suite"
timeout 150 $rt/node $g/tests/webgpu-tests.js > "$out/webgpu-tests.txt" 2>&1
echo "exit $?" >> "$out/webgpu-tests.txt"; tail -4 "$out/webgpu-tests.txt"

V=${V:-50257} D=${D:-768} L=${L:-12} H=${H:-12}
stand_in() { # config and a stand-in tokenizer: the benchmark feeds token ids, it never reads text
  cat > $1/config.json <<JSON
{"model_type": "gpt2", "vocab_size": $V, "n_embd": $D, "n_layer": $L, "n_head": $H, "n_positions": 2048, "bos_token_id": 0, "eos_token_id": 50256}
JSON
  cat > $1/tokenizer.json <<'JSON'
{"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
 "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "a": 1, "b": 2}, "unk_token": "<unk>"}}
JSON
  echo '{"eos_token": "<unk>"}' > $1/tokenizer_config.json
}
m32=$g/model; m16=$g/model-fp16; mkdir -p $m32 $m16
echo "== export + PyTorch CUDA eager"
PYTHONUNBUFFERED=1 timeout 150 ${PYTHON:-python3} $g/mkmodel.py $m32/model.onnx $V $D $L $H 16,64,256 256 32 2>&1 | tee "$out/torch-cuda.txt"
# Export only (it timed PyTorch in fp16 above too); same seed, so the same weights in half precision.
PYTHONUNBUFFERED=1 DTYPE=fp16 timeout 120 ${PYTHON:-python3} $g/mkmodel.py $m16/model.onnx $V $D $L $H 2>&1 | tee "$out/export-fp16.txt"
stand_in $m32; stand_in $m16
echo "== engine"
cp $g/dist/decode-bench.js $rt/
# Step level: tokens drawn in the graph (the GPU default); token level: a random token twist, scanned in JavaScript.
timeout 150 $rt/node $rt/decode-bench.js --model $m32 --reference $m32 --devices webgpu --levels step,token --ks 16,64,256 --cache 256 --steps 32 --threads 16 | tee "$out/decode-bench.jsonl"
timeout 90 $rt/node $rt/decode-bench.js --model $m16 --reference $m32 --devices webgpu --levels step --ks 16,64,256 --cache 256 --steps 32 --threads 16 | tee "$out/decode-bench-fp16.jsonl"
# The CPU at K = 16 and 64 only (K = 256 would take minutes there), drawing in JavaScript and in the graph.
timeout 60 $rt/node $rt/decode-bench.js --model $m32 --devices cpu --levels step --ks 16,64 --cache 256 --steps 32 --threads 16 | tee "$out/decode-bench-cpu.jsonl"
timeout 60 $rt/node $rt/decode-bench.js --model $m32 --devices cpu --levels step --sample-in-graph yes --ks 16,64 --cache 256 --steps 32 --threads 16 | tee "$out/decode-bench-cpu-graph.jsonl"
