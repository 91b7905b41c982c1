#!/usr/bin/env bash
# Issue #19's benchmark, on the GPU machine in the repository root with .gpu carried (scripts/gpu/README.md):
# random-weight decoders of real shapes, Qwen2.5-0.5B and Qwen2.5-Math-1.5B (SHAPES), in fp16 and q4f16
# as transformers.js downloads hold them and q4f16 as onnxruntime-genai's builder writes it (PARTS;
# built here by real-shapes.js, side by side), then
#  1. PyTorch CUDA eager fp16, plain sampling on the same weights and loop (its forward first checked
#     against the fp16 graph's logits): torch-real.jsonl;
#  2. the engine's step-level twisted SMC on WebGPU, its default cache (fixed capacity), a 256-token
#     prompt, K = 16, 64, 256 (KS): real-bench.jsonl, one line per model, precision and K;
# and each folder's step-bytes.json (what one step must read) in real-bytes.jsonl, for the bandwidth
# floor that real-table.mjs divides by. Every part is cut to what is left of DEADLINE (default 540 s);
# SKIP="a regex" leaves parts out. A dry run here: PYTHON=/tmp/torchvenv/bin/python TORCH_DEVICE=cpu
# SHAPES=small KS=4 SKIP_GL=1 bash scripts/software-webgpu.sh bash scripts/gpu/real.sh
DEADLINE=${DEADLINE:-540}
source "$(dirname "$0")/kit.sh"
cp $g/dist/real-shapes.js $rt/ && tar -xJf $g/tokenizers.tar.xz -C $rt
export FIXTURE_TOKENIZERS=$rt/tokenizers
shapes=${SHAPES:-qwen2.5-0.5b qwen2.5-math-1.5b}
parts=${PARTS:-fp16 q4f16 genai-q4f16}
ks=${KS:-16,64,256}
models=${MODELS:-/tmp/real-models}
threads=$(nproc)
# A shape's parts side by side (fp16 first, then the PyTorch weights and check from it): the command line.
build() {
  local make="$rt/node $rt/real-shapes.js $models $1" rest=""
  for p in $parts; do [ "$p" != fp16 ] && rest="$rest ($make $p $threads) & pids=\"\$pids \$!\";"; done
  echo "pids=; $rest $make fp16 $threads && $make torch $threads; ok=\$?; for p in \$pids; do wait \$p || ok=1; done; exit \$ok"
}
for shape in $shapes; do
  part 200 "build $shape" bash -c "$(build $shape)"
  for p in $parts; do
    [ -f $models/$shape/$p/step-bytes.json ] && echo "{\"shape\": \"$shape\", \"precision\": \"$p\", \"bytes\": $(cat $models/$shape/$p/step-bytes.json)}" >> "$out/real-bytes.jsonl"
  done
  part 120 "PyTorch CUDA fp16, $shape" bash -o pipefail -c "${PYTHON:-python3} $g/qwen2_reference.py --dir $models/$shape --config $models/$shape/fp16/config.json --ks $ks --steps 32 --prompt 256 --repeats 2 --threads $threads --device ${TORCH_DEVICE:-cuda} --dtype float16 --tolerance ${TORCH_TOLERANCE:-0.1} | sed 's/^{/{\"shape\": \"$shape\", /' | tee -a $out/torch-real.jsonl"
  for p in $parts; do
    part 150 "WebGPU $p, $shape" bash -o pipefail -c "$rt/node $rt/decode-bench.js --model $models/$shape/$p --devices webgpu --levels step --ks $ks --cache 256 --steps 32 --threads $threads | sed 's/^{/{\"shape\": \"$shape\", \"precision\": \"$p\", /' | tee -a $out/real-bench.jsonl"
  done
  # The disk: the next shape's models need the room.
  rm -rf "$models/$shape"
done
echo "total: ${SECONDS}s" >> "$out/times.txt"
