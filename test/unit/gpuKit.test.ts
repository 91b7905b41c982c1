import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { architectureOf, SMALL } from "../../scripts/fixtures/realLayouts";

/** The GPU kit's last step reads what decode-bench writes: the two must keep to one format. */
describe("the GPU kit's results table", function () {
  this.timeout(120000);
  const root = join(__dirname, "../..");

  it("puts decode-bench's JSON lines, PyTorch's timings and the profile's summary into the README table, with the goals' ratios", () => {
    const dir = mkdtempSync(join(tmpdir(), "tsmc-gpu-"));
    const prefix = join(dir, "profile-16");
    const bench = execFileSync(
      process.execPath,
      [
        join(root, "dist/decode-bench.js"),
        "--model",
        join(root, "test/fixtures/gpt2-tiny"),
        "--devices",
        "cpu",
        "--levels",
        "step",
        "--ks",
        "16",
        "--steps",
        "4",
        "--threads",
        "1",
        "--profile",
        prefix,
      ],
      { encoding: "utf8" },
    );
    const measured = JSON.parse(bench.trim().split("\n")[0]);
    assert.equal(measured.K, 16);
    // Per step, the median of the decode steps (as PyTorch is timed) besides the run's mean, prefill included.
    assert.ok(measured.msPerStepMedian > 0 && measured.msPerStep > 0, bench);
    // A WebGPU line as decode-bench writes it there (this machine may have no adapter), in the same file.
    // And one in the CPU's kernels (--fewest-kernels no), the GPU fusions' before.
    const webgpu = { ...measured, device: "webgpu (onnxruntime-node)" };
    // And the shipped Llama's, which get a line of their own rather than the table's cells.
    const llama = { ...webgpu, model: "models/tiny-math-llama" };
    // decode-bench's lines say which cache the decoder runs: the CPU's default grows; a fixed capacity
    // asked for in the fused graph is taken, with the cache bytes it keeps.
    assert.equal(measured.fixedCapacity, "no", bench);
    const fixedRun = execFileSync(
      process.execPath,
      [
        join(root, "dist/decode-bench.js"),
        "--model",
        join(root, "test/fixtures/gpt2-tiny"),
        "--devices",
        "cpu",
        "--levels",
        "step",
        "--ks",
        "16",
        "--steps",
        "4",
        "--threads",
        "1",
        "--fewest-kernels",
        "yes",
        "--fixed-capacity",
        "yes",
        "--reference",
        join(root, "test/fixtures/gpt2-tiny"),
      ],
      { encoding: "utf8" },
    );
    const [checked, fixed] = fixedRun
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.deepEqual([fixed.fixedCapacity, checked.fixedCapacity, typeof fixed.cacheMiB], ["yes", "yes", "number"], fixedRun);
    // Against the same weights as exported (growing cache, CPU): held rows, whose logits differ by
    // design, are left out of the comparison; every other row agrees.
    assert.ok(checked.maxAbsDiff < 1e-4 && checked.top1Agreement === 1, fixedRun);
    const lines = [
      { ...webgpu, msPerStep: 3.5, msPerStepMedian: 2.5 },
      { ...fixed, device: "webgpu (onnxruntime-node)", msPerStep: 2.5, msPerStepMedian: 2 },
      { ...webgpu, fewestKernels: "no", msPerStep: 6, msPerStepMedian: 5 },
      { ...llama, fewestKernels: "yes", msPerStep: 2, msPerStepMedian: 1.5 },
      { ...llama, fewestKernels: "no", msPerStep: 3, msPerStepMedian: undefined },
      { ...fixed, device: "webgpu (onnxruntime-node)", validation: "disabled", msPerStep: 1.9, msPerStepMedian: 1.75 },
      { ...fixed, device: "webgpu (onnxruntime-node)", packStep: "no", msPerStep: 3.1, msPerStepMedian: 3 },
      { ...fixed, device: "webgpu (onnxruntime-node; fixed-capacity KV cache)", level: "token", msPerStep: 4, msPerStepMedian: 3.5 },
    ];
    writeFileSync(join(dir, "bench.jsonl"), bench + lines.map((l) => JSON.stringify(l) + "\n").join(""));
    // mkmodel.py's line format (run.sh's torch-cuda.txt).
    writeFileSync(join(dir, "torch-cuda.txt"), "torch-cuda torch.float32 K=16 cache=256 median step 4.00 ms\n");
    writeFileSync(join(dir, "gpu.txt"), "Some GPU, 1.0, 1 MiB\n");
    // run.sh's cli-solve.jsonl: what it keeps of `twisted-smc solve --json`, run here on the shipped model.
    const solved = JSON.parse(
      execFileSync(
        process.execPath,
        [
          join(root, "dist/cli.js"),
          "solve",
          "Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?",
          "--json",
          "--device",
          "cpu",
          "--threads",
          "1",
        ],
        { encoding: "utf8" },
      ),
    );
    writeFileSync(
      join(dir, "cli-solve.jsonl"),
      JSON.stringify({ answer: solved.answer, device: solved.device, deviceChoice: solved.deviceChoice, timing: solved.timing }) + "\n",
    );
    // opCost.ts's lines (its own test runs it, in the WebGPU suite).
    const cost = { k: 16, layers: 12, heads: 12, headDim: 64, cache: 256, steps: 30, nodesPerStep: 12 };
    writeFileSync(
      join(dir, "op-cost.jsonl"),
      [
        { ...cost, case: "attention-growing", msPerStepMedian: 13 },
        { ...cost, case: "neg-fed-back", msPerStepMedian: 8.93 },
        { ...cost, case: "attention-growing", memPattern: false, msPerStepMedian: 7 },
        { ...cost, case: "attention-capacity", storageCache: "simple", msPerStepMedian: 4.5 },
      ]
        .map((c) => JSON.stringify(c))
        .join("\n") + "\n",
    );
    // onnxruntime's profile of that run, summed up (on the CPU no GPU kernels are timed).
    const profile = readdirSync(dir).find((f) => f.startsWith("profile") && f.endsWith(".json"))!;
    const summary = execFileSync(process.execPath, [join(root, "scripts/gpu/profile-summary.mjs"), join(dir, profile)], {
      encoding: "utf8",
    });
    const passes = Number(summary.match(/: (\d+) forward passes, 0 GPU kernels timed/)![1]);
    assert.ok(passes >= 4 + 1, summary); // the measured run's prefill and steps, after the warm-up's
    assert.match(summary, /later passes, median: wall [\d.]+ ms, GPU 0\.000 ms, 0 dispatches/);
    // Where the CPU's time goes, node by node (on a GPU: the provider issuing each node's work).
    assert.match(summary, /CPU time in nodes per pass \(median\): [\d.]+ ms, by op type:\n\s+[\d.]+ ms {2}\w+/);
    assert.match(summary, /CPU time per pass by node:\n\s+[\d.]+ ms {2}\S+/);
    writeFileSync(join(dir, "profile.txt"), summary);
    // run.sh's op-cost-profile.txt: profile-summary.mjs over opCost.ts's traces (here the same CPU trace under such a name).
    const costTrace = join(dir, "opcost-attention-growing_2026.json");
    copyFileSync(join(dir, profile), costTrace);
    writeFileSync(
      join(dir, "op-cost-profile.txt"),
      execFileSync(process.execPath, [join(root, "scripts/gpu/profile-summary.mjs"), costTrace], { encoding: "utf8" }),
    );
    const table = execFileSync(process.execPath, [join(root, "scripts/gpu/table.mjs"), dir, "2026-01-01"], { encoding: "utf8" });
    assert.match(table, /^Measured 2026-01-01 on Some GPU, 1\.0, 1 MiB.*the median of the steps/);
    // Cells by their column's header; columns with no number in this run (token level, fp16) are left out.
    const tableLines = table.split("\n").filter((l) => l.startsWith("|"));
    const header = tableLines[0].split("|").map((c) => c.trim());
    const row16 = tableLines
      .find((l) => l.startsWith("| 16 |"))!
      .split("|")
      .map((c) => c.trim());
    const cell = (name: string) => row16[header.indexOf(name)];
    assert.ok(!header.includes("WebGPU fp16, step"), tableLines[0]);
    // Token level, run with the decoder's default cache (fixed on a GPU), has a column whichever cache it ran.
    assert.equal(cell("WebGPU fp32, token"), "3.50");
    const fmt = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(1));
    assert.equal(cell("CPU, step"), fmt(measured.msPerStepMedian));
    assert.equal(cell("PyTorch CUDA fp32"), "4.00");
    assert.equal(cell("WebGPU fp32, step"), "2.50");
    assert.equal(cell("WebGPU fp32, step, kernels as on the CPU"), "5.00");
    assert.equal(cell("WebGPU fp32 step / PyTorch fp32"), "0.63×");
    assert.equal(cell("WebGPU fp32, step, fixed-capacity cache"), "2.00");
    assert.equal(cell("WebGPU fp32 fixed-capacity step / PyTorch fp32"), "0.50×");
    assert.equal(cell("CPU / WebGPU fp32 fixed-capacity step"), `${(measured.msPerStepMedian / 2).toFixed(2)}×`);
    assert.ok(table.includes(`WebGPU fp32 / CPU: K = 16: 3.50 / ${fmt(measured.msPerStep)} ms.`), table);
    assert.ok(table.includes("Means over each whole run, WebGPU fp32 step level, fixed-capacity cache: K = 16: 2.50 ms."), table);
    assert.ok(
      table.includes(
        `\`twisted-smc solve\` of the README's problem, device auto: 42 in ${solved.timing.totalMs} ms (${solved.timing.forwardPasses} passes) on cpu (onnxruntime-node, 1 thread).`,
      ),
      table,
    );
    assert.ok(
      table.includes(`Logits and hidden states read back from the GPU: ${measured.readbackKiBPerStep} KiB per step at every K and level`),
      table,
    );
    assert.ok(
      table.includes(
        "- K = 16, 256-token cache, 12 layers: attention-growing 13.0, neg-fed-back 8.93\n- K = 16, 256-token cache, 12 layers, memory patterns off: attention-growing 7.00\n- K = 16, 256-token cache, 12 layers, buffer cache simple: attention-capacity 4.50",
      ),
      table,
    );
    assert.match(table, /- attention-growing: wall [\d.]+ ms, GPU busy 0\.0 ms in 0 dispatches, CPU in the nodes [\d.]+ ms/);
    assert.match(table, /- K = 16: wall [\d.]+ ms, GPU busy 0\.0 ms, 0 dispatches/);
    // The validation-off row: its own line, not the fixed-capacity column.
    assert.ok(
      table.includes(
        "With Dawn's per-dispatch validation off (`disabled`), WebGPU fp32, step level: K = 16, fixed-capacity cache: 1.75 ms (2.00 with it).",
      ),
      table,
    );
    assert.ok(
      table.includes(
        "The fixed-capacity cache with its per-pass inputs fed one by one (five uploads a step instead of one), WebGPU fp32, step level: K = 16: 3.00 ms (2.00 packed).",
      ),
      table,
    );
    assert.ok(
      table.includes(
        "The shipped Llama on WebGPU, step level, K = 16 / 64: 1.50 / – ms per step in the fewest kernels, 3.00 / – in the CPU's.",
      ),
      table,
    );
  });
  it("builds issue #19's real-shape models (a small stand-in) and tables the engine against PyTorch and the bandwidth floor", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tsmc-gpu-real-"));
    const models = join(dir, "models");
    const tsx = join(root, "node_modules/tsx/dist/cli.mjs");
    for (const part of ["fp16", "q4f16", "genai-q4f16", "torch"])
      execFileSync(process.execPath, [tsx, join(root, "scripts/gpu/realShapes.ts"), models, "small", part, "1"], { stdio: "pipe" });
    // What a step reads, counted from the graphs: fp16 reads every weight once (the tied head is the
    // embedding); q4f16 gathers its fp16 embedding and reads a 4-bit copy as the head.
    const { hidden: d, heads: H, kvHeads: KV, headDim: hd, intermediate: I, vocab: V, layers } = architectureOf("qwen2.5", SMALL);
    const perLayer = 2 * d + d * (H + 2 * KV) * hd + (H + 2 * KV) * hd + H * hd * d + 3 * d * I;
    const fp16 = JSON.parse(readFileSync(join(models, "small/fp16/step-bytes.json"), "utf8"));
    const params = V * d + layers * perLayer + d;
    // Beyond the weights, only the graph's small constants (shapes, scalars, rotary frequencies).
    assert.ok(fp16.weightBytes >= 2 * params && fp16.weightBytes < 2 * params + 65536, JSON.stringify(fp16));
    assert.deepEqual([fp16.gatheredBytes, fp16.kvBytesPerToken], [0, layers * 2 * KV * hd * 2]);
    const q4 = JSON.parse(readFileSync(join(models, "small/q4f16/step-bytes.json"), "utf8"));
    assert.equal(q4.gatheredBytes, V * d * 2);
    assert.ok(q4.weightBytes < fp16.weightBytes / 3, JSON.stringify(q4));
    // onnxruntime-genai's q4f16: the same 4-bit weights; its rotary tables (cos, sin) are read besides.
    const genai = JSON.parse(readFileSync(join(models, "small/genai-q4f16/step-bytes.json"), "utf8"));
    assert.equal(genai.gatheredBytes, V * d * 2);
    assert.ok(genai.weightBytes > q4.weightBytes && genai.weightBytes < q4.weightBytes * 1.2, JSON.stringify(genai));
    // The PyTorch check's ids and the fp16 graph's logits over them, and its weights.
    const check = JSON.parse(readFileSync(join(models, "small/check.json"), "utf8"));
    assert.equal(readFileSync(join(models, "small/check_logits.f32")).length, check.ids.length * V * 4);
    assert.ok(readFileSync(join(models, "small/weights.safetensors")).length > params * 4);
    // real.sh's files: decode-bench's lines (run here on the CPU) with the shape and precision put in
    // front, step-bytes.json's, PyTorch's (its JSON as qwen2_reference.py prints it), the card's name.
    const out = join(dir, "out");
    mkdirSync(out);
    const bench = execFileSync(
      process.execPath,
      [
        join(root, "dist/decode-bench.js"),
        "--model",
        join(models, "small/fp16"),
        "--devices",
        "cpu",
        "--levels",
        "step",
        "--ks",
        "4",
        "--cache",
        "16",
        "--steps",
        "4",
        "--threads",
        "1",
      ],
      { encoding: "utf8" },
    );
    const line = JSON.parse(bench.trim().split("\n")[0]);
    writeFileSync(join(out, "real-bench.jsonl"), JSON.stringify({ shape: "small", precision: "fp16", ...line }) + "\n");
    writeFileSync(join(out, "real-bytes.jsonl"), JSON.stringify({ shape: "small", precision: "fp16", bytes: fp16 }) + "\n");
    const torch = {
      shape: "small",
      K: 4,
      msPerStepMedian: 2 * line.msPerStepMedian,
      check: { maxAbsDiff: 0.01, maxAbsLogit: 12, top1Agreement: 1 },
    };
    writeFileSync(join(out, "torch-real.jsonl"), JSON.stringify(torch) + "\n");
    writeFileSync(join(out, "gpu.txt"), "NVIDIA H100 80GB HBM3, 580.0, 81559 MiB\n");
    const { realTable } = await import(join(root, "scripts/gpu/real-table.mjs"));
    const { rows, text } = realTable(out, {});
    // The floor: the weights and the cache a mid-run step reads (16-token prompt + 16), at 3,350 GB/s.
    const floorMs = ((fp16.weightBytes + 4 * fp16.kvBytesPerToken * (16 + 16)) / 3350e9) * 1000;
    assert.equal(rows.length, 1);
    assert.deepEqual([rows[0].engine, rows[0].torch, rows[0].cache], [line.msPerStepMedian, 2 * line.msPerStepMedian, "growing"]);
    assert.ok(Math.abs(rows[0].floorMs - floorMs) < 1e-12, `${rows[0].floorMs} ${floorMs}`);
    assert.match(text, /^NVIDIA H100 80GB HBM3, 580\.0, 81559 MiB, 3350 GB\/s \(datasheet\)/);
    assert.match(text, new RegExp(`\\| small \\| fp16 \\| 4 \\| [\\d.]+ \\(growing cache\\) \\| [\\d.]+ \\| 0\\.5 \\|`));
    assert.match(text, /small largest difference 0\.01 \(logits up to 12\), top token agreed 1/);
    // A card not in the table: the floor needs BANDWIDTH_GBS.
    writeFileSync(join(out, "gpu.txt"), "Some GPU\n");
    assert.equal(realTable(out, {}).rows[0].floorMs, undefined);
    assert.ok(Math.abs(realTable(out, { BANDWIDTH_GBS: "1000" }).rows[0].floorMs - (floorMs * 3350) / 1000) < 1e-12);
  });
});
