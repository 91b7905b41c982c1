#!/usr/bin/env bash
# On the GPU machine, in the repository root with .gpu carried (about 4 minutes on an H100; every part
# is cut to fit DEADLINE seconds, most important first, so a slow part costs only what comes after it):
#  1. a GPT-2-small-shaped decoder with random weights (mkmodel.py) in fp32, PyTorch CUDA eager timed
#     on the same weights and loop (fp32 and fp16);
#  2. the engine's twisted SMC decode loop on WebGPU (logits checked against the model on the CPU
#     first) with a growing KV cache, then with the default fixed-capacity one, onnxruntime's profile of
#     both, the same in the CPU's kernels, then the loop on the CPU;
#  3. token level on WebGPU, then the same weights exported in fp16 on WebGPU, then the shipped Llama,
#     and the CLI's solve of the README's problem (device auto);
#  4. the WebGPU test suite on the real GPU (GPU-vs-CPU logits, on-device gathers, toy-model statistics).
#  5. what the KV cache's nodes cost the WebGPU provider (scripts/gpu/opCost.ts): op-cost.jsonl, and
#     profiled: op-cost-profile.txt.
# Results in $OUT (or ./gpu-results/): gpu.txt, torch-cuda.txt, bench.jsonl, profile.txt, cli-solve.jsonl, webgpu-tests.txt,
# op-cost.jsonl, op-cost-profile.txt, times.txt. SKIP="a regex" leaves out the parts whose names match (a shorter rerun).
source "$(dirname "$0")/kit.sh"

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
m32=$g/model; m16=$g/model-fp16; mkdir -p $m32 $m16; stand_in $m32; stand_in $m16
bench="$rt/node $rt/decode-bench.js --cache 256 --steps 32 --threads 16"

part 120 "export + PyTorch CUDA eager" bash -o pipefail -c "${PYTHON:-python3} $g/mkmodel.py $m32/model.onnx $V $D $L $H 16,64,256 256 32 2>&1 | tee $out/torch-cuda.txt"
# Every measurement goes to bench.jsonl, one JSON line each (a run may bring back only a few files).
# Step level: tokens drawn in the graph, the GPU default. Prepares the graph (written beside the model) first.
# First with the growing KV cache (every step's cache tensors made anew: the default until 2026-11-26).
part 120 "WebGPU fp32, step level" bash -o pipefail -c "$bench --model $m32 --reference $m32 --devices webgpu --levels step --ks 1,16,64,256 --fixed-capacity no | tee -a $out/bench.jsonl"
# The KV cache at a fixed capacity, the GPU default (GroupQueryAttention; onnxruntime's exact-size buffer
# cache for the process): no cache tensor made anew per step. Checked against the model on the CPU first.
# The parts below that do not name a cache run the default.
part 120 "WebGPU fp32, step level, fixed-capacity cache (the default)" bash -o pipefail -c "$bench --model $m32 --reference $m32 --devices webgpu --levels step --ks 16,64,256 | tee -a $out/bench.jsonl"
# Where a step's time goes: onnxruntime's profile (GPU time per kernel from timestamp queries), summed up.
rm -f /tmp/profile-*.json
for k in 16 256; do
  part 60 "WebGPU fp32 profile, K = $k" bash -o pipefail -c "$bench --model $m32 --devices webgpu --levels step --ks $k --steps 8 --fixed-capacity no --profile /tmp/profile-$k > /dev/null && $rt/node scripts/gpu/profile-summary.mjs /tmp/profile-${k}_*.json 30 | tee -a $out/profile.txt"
done
part 60 "WebGPU fp32 profile, K = 16, fixed-capacity cache" bash -o pipefail -c "$bench --model $m32 --devices webgpu --levels step --ks 16 --steps 8 --fixed-capacity yes --profile /tmp/profile-16-capacity > /dev/null && $rt/node scripts/gpu/profile-summary.mjs /tmp/profile-16-capacity_*.json 30 | tee -a $out/profile.txt"
# The same with its per-pass inputs fed one by one (five uploads a step, each a staging buffer and a
# flush) instead of packed in one: what the packing buys.
part 30 "WebGPU fp32, K = 16, fixed-capacity cache, inputs fed apart" bash -o pipefail -c "$bench --model $m32 --devices webgpu --levels step --ks 16 --fixed-capacity yes --pack-step no | tee -a $out/bench.jsonl"
# With no cache buffer made per step, what is left is issuing each kernel: Dawn's per-dispatch checks off.
part 30 "WebGPU fp32, K = 16, fixed-capacity cache, Dawn's checks off" bash -o pipefail -c "$bench --model $m32 --devices webgpu --levels step --ks 16 --fixed-capacity yes --webgpu-validation disabled | tee -a $out/bench.jsonl"
# The same in the CPU's kernels (layers unfused, the sampling head's least-work layout): what the
# fewest kernels bought.
part 60 "WebGPU fp32, step level, kernels as on the CPU" bash -o pipefail -c "$bench --model $m32 --devices webgpu --levels step --ks 16,64 --fewest-kernels no | tee -a $out/bench.jsonl"
part 45 "WebGPU fp32 profile, K = 16, kernels as on the CPU" bash -o pipefail -c "$bench --model $m32 --devices webgpu --levels step --ks 16 --steps 8 --fewest-kernels no --profile /tmp/profile-16-plain > /dev/null && $rt/node scripts/gpu/profile-summary.mjs /tmp/profile-16-plain_*.json 30 | tee -a $out/profile.txt"
part 90 "CPU, step level" bash -o pipefail -c "$bench --model $m32 --devices cpu --levels step --ks 16,64 | tee -a $out/bench.jsonl"
# Token level: a random rank-32 token twist, evaluated with the proposal on the GPU.
part 90 "WebGPU fp32, token level" bash -o pipefail -c "$bench --model $m32 --devices webgpu --levels token --ks 16,64,256 | tee -a $out/bench.jsonl"
# Same seed, so the same weights in half precision (exported on CUDA); checked against the fp32 model on the CPU.
part 60 "export fp16" bash -o pipefail -c "DTYPE=fp16 ${PYTHON:-python3} $g/mkmodel.py $m16/model.onnx $V $D $L $H 2>&1 | tail -2"
part 90 "WebGPU fp16, step level" bash -o pipefail -c "$bench --model $m16 --reference $m32 --devices webgpu --levels step --ks 16,64,256 | tee -a $out/bench.jsonl"
# The shipped Llama (RMS norms, rotary embeddings), in the fewest kernels and in the CPU's.
part 45 "shipped Llama on WebGPU" bash -o pipefail -c "for f in yes no; do $bench --model models/tiny-math-llama --devices webgpu --levels step --ks 16,64 --fewest-kernels \$f | tee -a $out/bench.jsonl; done"
# The main job as a user runs it: the CLI's solve on the shipped model, device auto (the GPU, its default cache).
part 30 "CLI solve on the GPU" bash -o pipefail -c "for i in 1 2; do $rt/node dist/cli.js solve 'Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?' --json | $rt/node -e 'const o = JSON.parse(require(\"fs\").readFileSync(0, \"utf8\")); console.log(JSON.stringify({ answer: o.answer, device: o.device, deviceChoice: o.deviceChoice, timing: o.timing }))' | tee -a $out/cli-solve.jsonl; done"
part 120 "WebGPU test suite" bash -c "$rt/node $g/tests/webgpu-tests.js > $out/webgpu-tests.txt 2>&1; rc=\$?; echo exit \$rc >> $out/webgpu-tests.txt; tail -4 $out/webgpu-tests.txt; exit \$rc"
# Dawn's per-dispatch validation, off, now that a step issues fewer kernels (last: within noise).
part 30 "WebGPU fp32, step level, validation disabled" bash -o pipefail -c "$bench --model $m32 --devices webgpu --levels step --ks 16 --webgpu-validation disabled | tee -a $out/bench.jsonl"
# Per step, 12 attention nodes (or 24 elementwise ones) over the cache alone, at K = 16 and 64, then with
# hardly any data (the per-node floor). See opCost.ts for the cases.
part 60 "op costs" bash -o pipefail -c "for a in '--k 16' '--k 64' '--k 16 --cache 16'; do $rt/node $rt/op-cost.js \$a ${OPCOST:-} | tee -a $out/op-cost.jsonl; done"
# The same with onnxruntime's exact-size buffer cache (its default keeps at most 10 free buffers of a
# cache tensor's size, so most of a step's 24 new cache tensors are made anew; a fixed-size cache then
# makes none). Its own process: the first WebGPU session sets the buffer cache for the whole process.
part 40 "op costs reusing exact-size buffers" bash -o pipefail -c "$rt/node $rt/op-cost.js --k 16 --cases attention-capacity,neg-fed-back,attention-same-cache,attention-growing --storage-cache simple ${OPCOST:-} | tee -a $out/op-cost.jsonl"
# Without onnxruntime's memory patterns (planned anew for each new set of input shapes: every step here).
part 30 "op costs without memory patterns" bash -o pipefail -c "$rt/node $rt/op-cost.js --k 16 --cases attention-growing,attention-same-cache --mem-pattern no ${OPCOST:-} | tee -a $out/op-cost.jsonl"
# The same, profiled: GPU time per kernel against the CPU time onnxruntime spends in each node.
part 45 "op costs profiled" bash -o pipefail -c "rm -f /tmp/opcost-*; $rt/node $rt/op-cost.js --k 16 --steps 12 --cases attention-growing,attention-same-cache,neg-fed-back,concat-growing --profile /tmp/opcost ${OPCOST:-} > /dev/null && for f in /tmp/opcost-*.json; do $rt/node scripts/gpu/profile-summary.mjs \$f 12; done | tee -a $out/op-cost-profile.txt"
echo "total: ${SECONDS}s" >> "$out/times.txt"
