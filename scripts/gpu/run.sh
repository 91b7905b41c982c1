#!/usr/bin/env bash
# On the GPU machine, in the repository root with .gpu carried: builds a GPT-2-small-shaped decoder with
# random weights (mkmodel.py: Optimum-style names + last_hidden_state), then measures twisted SMC decode
# steps on WebGPU and on the CPU with the engine, and PyTorch CUDA eager on the same weights and loop.
# Results: $OUT/decode-bench.json and $OUT/torch-cuda.txt (or ./gpu-results/ without $OUT).
set -uo pipefail
out=${OUT:-gpu-results}; mkdir -p "$out"
g=.gpu
rt=/tmp/gpu-runtime; mkdir -p $rt
tar -xJf $g/node.tar.xz -C $rt && tar -xJf $g/node_modules.tar.xz -C $rt
for f in $g/gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
model=$g/model; mkdir -p $model
V=50257 D=768 L=12 H=12
PYTHONUNBUFFERED=1 python3 $g/mkmodel.py $model/model.onnx $V $D $L $H 16,64,256 256 32 2>&1 | tee "$out/torch-cuda.txt"
cat > $model/config.json <<JSON
{"model_type": "gpt2", "vocab_size": $V, "n_embd": $D, "n_layer": $L, "n_head": $H, "n_positions": 2048, "bos_token_id": 0, "eos_token_id": 50256}
JSON
# A stand-in tokenizer: the benchmark feeds token ids, it never reads text.
cat > $model/tokenizer.json <<'JSON'
{"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
 "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "a": 1, "b": 2}, "unk_token": "<unk>"}}
JSON
echo '{"eos_token": "<unk>"}' > $model/tokenizer_config.json
cp $g/dist/decode-bench.js $rt/
timeout 480 $rt/node $rt/decode-bench.js --model $model --devices webgpu,cpu --ks 16,64,256 --cache 256 --steps 32 --threads 16 | tee "$out/decode-bench.json"
