/**
 * The engine's GPU path, on whatever WebGPU adapter this machine has: a real GPU, or Mesa's lavapipe
 * (Vulkan on the CPU) under `scripts/software-webgpu.sh`, which is how CI runs it. The KV cache lives
 * in GPU buffers, resampling gathers it inside the graph, and the numbers must match the CPU provider.
 *
 * Without an adapter the suite skips, unless TWISTED_SMC_REQUIRE_WEBGPU=1 (set by the script): then a
 * missing adapter fails it.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { loadModel, LoadedModel, withCpuFallback } from "../../src/engine/lm/model/loadModel";
import { KvCache, liveKvCaches } from "../../src/engine/lm/decoder/kvCache";
import { kvReorderModel, KvReorder } from "../../src/engine/lm/decoder/kvReorder";
import { cpSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { generate } from "../../src/engine/lm/generate";
import { DTYPE } from "../../src/engine/lm/onnx/graphBuild";
import { openModelFolder } from "../../src/engine/lm/model/modelFolder";
import { prepareForSmc } from "../../src/engine/lm/onnx/prepareGraph";
import { message } from "../../src/engine/lm/onnx/protoWire";
import { drawModel, logitRowsModel } from "../../src/engine/lm/onnx/logitGraphs";
import { liveDeviceLogits } from "../../src/engine/lm/decoder/stepReaders";
import { runTwistedSmc } from "../../src/engine/smc/twistedSmc";
import { TokenTwistHead } from "../../src/engine/twist/heads";
import { OnnxTokenTwist } from "../../src/engine/twist/onnxTwist";
import { Rng } from "../../src/engine/util/rng";
import { CASES as OP_COST_CASES, measureOpCosts } from "../../scripts/gpu/opCost";
import { measureCacheMemory } from "../../scripts/gpu/cacheMemory";
import { solve } from "../../src/engine/solve";
import { loadTwistOption } from "../../src/engine/twist/resolve";
import {
  assertGraphDrawsMatchLogits,
  assertModelDrawsMatchLogits,
  assertSameAsGrowingCache,
  FIXED_CAPACITY_STORED_BATCHES,
  assertSameGreedy,
  hiddenOf,
  logitsOf,
  maxAbsDiff,
  MODEL_DIR,
} from "../unit/helpers";
import { TOY_EOS, TOY_PROMPT } from "../unit/toyModel";
import { writeModelFolder } from "../../scripts/fixtures/realLayouts";
import { enumerateDecoder, toyOptions, toyStatisticsOnDecoder } from "../unit/toyStatistics";

const REQUIRED = process.env.TWISTED_SMC_REQUIRE_WEBGPU === "1";
const ROOT = join(__dirname, "../..");
const FP16 = join(ROOT, "test/fixtures/tiny-math-llama-fp16");
const GPT2 = join(ROOT, "test/fixtures/gpt2-tiny");
const FOUR_TOKENS = join(ROOT, "test/fixtures/gpt2-four-tokens");
const GQA = join(ROOT, "test/fixtures/llama-gqa-tiny");
/** Decoder folders, with how far GPU and CPU logits may differ: fp32 kernels sum in other orders, fp16 rounds. */
const FOLDERS: [string, string, number][] = [
  ["the shipped Llama", MODEL_DIR, 2e-3],
  ["a GPT-2", GPT2, 2e-3],
  ["a grouped-query Llama", GQA, 2e-3],
  ["the shipped Llama in fp16", FP16, 0.25],
];

const loaded = new Map<string, Promise<LoadedModel>>();
function model(dir: string, device: "webgpu" | "cpu"): Promise<LoadedModel> {
  const key = `${device}|${dir}`;
  if (!loaded.has(key)) loaded.set(key, loadModel(dir, { device, threads: 1 }));
  return loaded.get(key)!;
}

describe("the engine on WebGPU", function () {
  this.timeout(300000);

  before(async function () {
    const gpu = await model(GPT2, "webgpu").catch((e: Error) => ({ error: e.message }));
    const choice =
      "error" in gpu ? gpu.error : gpu.lm.device.startsWith("webgpu") ? undefined : (gpu.lm as { deviceChoice?: string }).deviceChoice;
    if (choice === undefined) return;
    if (REQUIRED) throw new Error(`TWISTED_SMC_REQUIRE_WEBGPU=1 but WebGPU could not be used: ${choice}`);
    this.skip();
  });

  after(async () => {
    for (const m of loaded.values()) await (await m).lm.dispose();
  });

  it("keeps the KV cache in GPU buffers and reports the device", async () => {
    const { lm } = await model(GPT2, "webgpu");
    // At a fixed capacity, the GPU's default (fixedCapacity.ts), which the device line says.
    assert.match(lm.device, /^webgpu \(onnxruntime-node; fixed-capacity KV cache[;)]/);
    assert.equal((lm as { fixedCapacity?: boolean }).fixedCapacity, true);
    const out = await lm.prefill([1, 5, 6]);
    const cache = out.state as KvCache;
    assert.ok(cache.tensors.length > 0);
    for (const t of cache.tensors) assert.equal(t.location, "gpu-buffer");
    // Reordered by row where it is (a broadcast, here), it stays there.
    const reorder = new KvReorder("webgpu", 1, cache.tensors.length, DTYPE.float, lm.device);
    const broadcast = await reorder.reorder(cache.tensors, [0, 0, 0]);
    assert.deepEqual(
      broadcast.map((t) => [t.location, t.dims[0]]),
      cache.tensors.map(() => ["gpu-buffer", 3]),
    );
    for (const t of broadcast) t.dispose();
    await reorder.dispose();
    out.state.dispose();
    out.release();
  });

  for (const [name, dir, tolerance] of FOLDERS) {
    it(`agrees with the CPU on ${name}: prefill, a broadcast, held rows, resampling gathers on the device and teacher forcing`, async () => {
      const [gpu, cpu] = [(await model(dir, "webgpu")).lm, (await model(dir, "cpu")).lm];
      const prompt = [1, 20, 30, 40, 50, 60];
      const a = await gpu.prefill(prompt);
      const b = await cpu.prefill(prompt);
      assert.ok(maxAbsDiff(await hiddenOf(a), await hiddenOf(b)) < tolerance);
      assert.ok(maxAbsDiff(await logitsOf(a), await logitsOf(b)) < tolerance);
      let [g, c] = [a.state.select([0, 0, 0]), b.state.select([0, 0, 0])];
      a.state.dispose();
      b.state.dispose();
      // A fixed-capacity cache (the GPU's default, where the graph takes it) lets a held row's token see
      // itself, so that row's logits differ by design and are not compared; the growing cache's are.
      const fixed = !!(gpu as { fixedCapacity?: boolean }).fixedCapacity;
      // Grouped-query attention takes the fast path too (its cache read by GroupQueryAttention as exported).
      if (dir === GQA) assert.match(gpu.device, /fixed-capacity KV cache/);
      const compared = (logits: Float32Array, tokens: (number | null)[]) =>
        fixed ? logits.filter((_, i) => tokens[Math.floor(i / gpu.vocabSize)] !== null) : logits;
      for (let s = 0; s < 6; s++) {
        const tokens = [10 + s, s % 2 ? null : 20 + s, 30];
        const x = await gpu.step(g, tokens);
        const y = await cpu.step(c, tokens);
        const diff = maxAbsDiff(compared(await logitsOf(x), tokens), compared(await logitsOf(y), tokens));
        assert.ok(diff < tolerance, `step ${s}: logits differ by ${diff}`);
        const ancestors = [2, 0, s % 3];
        [g, c] = [x.state.select(ancestors), y.state.select(ancestors)];
        x.state.dispose();
        y.state.dispose();
      }
      g.dispose();
      c.dispose();
      // Teacher forcing (training's positives): every position's logits, read back from the GPU.
      const [ea, eb] = [await gpu.encodeAll!(prompt), await cpu.encodeAll!(prompt)];
      assert.equal(ea.logits.length, prompt.length * gpu.vocabSize);
      assert.ok(maxAbsDiff(ea.logits, eb.logits) < tolerance, `encodeAll differs by ${maxAbsDiff(ea.logits, eb.logits)}`);
    });
  }

  it("agrees with the CPU on a 100-token prompt (prefill, the next step, teacher forcing), in passes as long as this GPU's attention gets right", async () => {
    for (const dir of [GPT2, MODEL_DIR]) {
      const [gpu, cpu] = [(await model(dir, "webgpu")).lm, (await model(dir, "cpu")).lm];
      // Where the check found the fused attention wrong on long chunks, the device says so.
      const passes = gpu.device.match(/prompts in (\d+)-token passes/);
      if (passes) assert.ok(Number(passes[1]) < 256, gpu.device);
      const prompt = Array.from({ length: 100 }, (_, i) => 3 + ((i * 53) % 320));
      const [a, b] = [await gpu.prefill(prompt), await cpu.prefill(prompt)];
      assert.ok(maxAbsDiff(await logitsOf(a), await logitsOf(b)) < 2e-3, `${dir}: prefill`);
      const [x, y] = [await gpu.step(a.state, [9]), await cpu.step(b.state, [9])];
      assert.ok(maxAbsDiff(await logitsOf(x), await logitsOf(y)) < 2e-3, `${dir}: the step after`);
      x.state.dispose();
      y.state.dispose();
      const [ea, eb] = [await gpu.encodeAll!(prompt), await cpu.encodeAll!(prompt)];
      assert.ok(maxAbsDiff(ea.logits, eb.logits) < 2e-3, `${dir}: teacher forcing`);
    }
  });

  it("keeps a fixed-capacity KV cache on the GPU (GroupQueryAttention, the exact-size buffer cache): the CPU's growing cache's outputs, across held rows, resamplings, growths and batches padded to a power of two", async () => {
    for (const dir of [GPT2, MODEL_DIR, GQA]) {
      // A copy: the prepared graph is written beside the export.
      const copy = mkdtempSync(join(tmpdir(), "tsmc-capacity-"));
      cpSync(dir, copy, { recursive: true, filter: (src) => !src.includes(".smc.") });
      const fixed = await loadModel(copy, { device: "webgpu", threads: 1, fixedCapacity: true, capacityStep: 8 });
      try {
        assert.ok(fixed.lm.device.startsWith("webgpu") && (fixed.lm as { fixedCapacity?: boolean }).fixedCapacity, fixed.lm.device);
        const { capacities, stored } = await assertSameAsGrowingCache(fixed, await model(dir, "cpu"), 2e-3);
        assert.deepEqual([...new Set(capacities)], [8, 16, 24]);
        assert.deepEqual(stored, FIXED_CAPACITY_STORED_BATCHES);
      } finally {
        await fixed.lm.dispose();
      }
    }
  });

  it("keeps a fixed-capacity cache's memory to its budget across solves (scripts/gpu/cacheMemory.ts): powers of two, and a reopen once past it", async () => {
    const copy = mkdtempSync(join(tmpdir(), "tsmc-memory-"));
    cpSync(GPT2, copy, { recursive: true, filter: (src) => !src.includes(".smc.") });
    // 2 layers, 4 heads of 16, float32: 3 sets of 4 tensors [batch, 4, 8, 16] per shape (capacity step 8).
    const setBytes = (batch: number, length: number) => 3 * 4 * batch * 4 * length * 16 * 4;
    // A 2-token prompt, a step, then rows dropped: at most 7 positions, so every pass fits capacity 8.
    const run = (ks: number[], cacheBudget: number) =>
      measureCacheMemory(copy, { ks, fixedCapacity: true, capacityStep: 8, prompt: 2, steps: 1, cacheBudget });
    const unbounded = await run([5, 3], Infinity);
    // The load's probe and the prompts made 1 × 2 and 2 × 8; K = 5 runs as 8 rows, then 4, 2 (again)
    // and 1; K = 3 (run as 4, then 2 and 1) adds no shape.
    const shapes = setBytes(1, 2) + [2, 8, 4, 1].reduce((sum, b) => sum + setBytes(b, 8), 0);
    assert.deepEqual(
      unbounded.map((s) => [s.K, s.retainedBytes, s.reopens]),
      [
        [5, shapes, 0],
        [3, shapes, 0],
      ],
    );
    // Past a budget of the K = 8 shape alone, each later solve starts from reopened sessions.
    const bounded = await run([5, 5, 3], setBytes(8, 8));
    assert.deepEqual(
      bounded.map((s) => s.reopens),
      [0, 1, 2],
    );
  });

  it("feeds a step its ids, positions and draw inputs in one upload and copies nothing else between devices mid-pass but a growing cache's masks (GPT-2, the shipped Llama; fixed-capacity and growing caches)", async () => {
    for (const [dir, fixedCapacity] of [
      [GPT2, true],
      [MODEL_DIR, true],
      [GPT2, false],
      [MODEL_DIR, false],
    ] as const) {
      const copy = mkdtempSync(join(tmpdir(), "tsmc-packed-"));
      cpSync(dir, copy, { recursive: true, filter: (src) => !src.includes(".smc.") });
      const { lm } = await loadModel(copy, {
        device: "webgpu",
        threads: 1,
        fixedCapacity,
        capacityStep: 8,
        ortProfile: join(copy, "profile"),
      });
      const first = await lm.prefill([1, 20, 30], { uniforms: [0.5], temperature: 1 });
      first.release();
      let state = first.state.select([0, 0, 0]);
      first.state.dispose();
      for (let t = 0; t < 3; t++) {
        const out = await lm.step(state, [5 + t, null, 7], { uniforms: [0.1, 0.5, 0.9], temperature: 0.8 });
        out.release();
        state = out.state;
      }
      state.dispose();
      await lm.dispose();
      // onnxruntime's trace of the decoder's session (written on dispose): every node, and no copy node.
      const trace = readdirSync(copy).filter((f) => f.startsWith("profile") && f.endsWith(".json"));
      assert.equal(trace.length, 1, trace.join(", "));
      const nodes = (
        JSON.parse(readFileSync(join(copy, trace[0]), "utf8")) as {
          cat: string;
          name: string;
          args: { op_name: string; input_type_shape: unknown };
        }[]
      ).filter((e) => e.cat === "Node" && e.name.endsWith("_kernel_time"));
      assert.ok(
        nodes.some((e) => e.args.op_name === (fixedCapacity ? "GroupQueryAttention" : "MultiHeadAttention")) &&
          nodes.some((e) => e.name.startsWith("smc_step/split")),
        "the packed graph ran",
      );
      // The growing cache's graph still uploads the masks the export builds on the CPU from attention_mask (bool).
      const copies = nodes
        .filter((e) => e.args.op_name.startsWith("Memcpy"))
        .map((e) => `${e.args.op_name} ${JSON.stringify(e.args.input_type_shape)}`);
      assert.deepEqual(
        copies.filter((c) => fixedCapacity || !/^MemcpyFromHost \[\{"bool"/.test(c)),
        [],
        `${dir}, fixed capacity ${fixedCapacity}`,
      );
    }
  });

  for (const [name, dir] of [
    ["a GPT-2", GPT2],
    ["the shipped Llama in fp16", FP16],
  ]) {
    it(`draws tokens inside the graph on the GPU (${name}): the inverse CDF at each uniform, with log p and log q`, async () => {
      const { lm } = await model(dir, "webgpu");
      for (const temperature of [1, 0.7]) await assertGraphDrawsMatchLogits(lm, temperature);
    });

    it(`draws on the GPU from chosen rows left there, untwisted and from a low-rank token twist's proposal (${name})`, async () => {
      const { lm } = await model(dir, "webgpu");
      for (const temperature of [1, 0.7]) await assertModelDrawsMatchLogits(lm, temperature);
    });
  }

  // Decoders in the layouts of real Hub exports (scripts/fixtures/realLayouts.ts), with the file a GPU
  // download holds: what each computes on the GPU within its precision of the CPU's, and a solve.
  // `fixed`: whether the GPU's fixed-capacity cache takes it (grouped-query attention found behind its
  // widening, fp16 softmax casts included, a sliding window and Gemma-2's soft-capping carried by its
  // nodes, or the export's own GroupQueryAttention taken as it is).
  for (const [family, precision, layout, tolerance, fixed, slidingWindow] of [
    ["llama3.2", "q4", "genai", 1e-3, true, undefined], // GroupQueryAttention, SkipSimplifiedLayerNormalization, MatMulNBits as onnxruntime-genai writes them
    ["qwen2.5", "fp32", "genai", 1e-3, true, 6], // a Mistral-style window on every layer, as the nodes' local_window_size
    ["qwen2.5", "fp16", "genai", 0.05, true, undefined], // measured: 0.031 (fp16 logits)
    ["qwen2.5", "q4f16", "genai", 0.03, true, undefined], // measured: 0.016
    ["llama3.2", "fp32", "optimum", 1e-3, true, undefined],
    ["qwen2.5", "fp16", "optimum", 0.05, true, undefined], // measured: at most 0.035 from the CPU on either cache (fp16 logits)
    ["qwen2.5", "q4f16", "optimum", 0.03, true, undefined],
    ["gemma2", "fp16", "optimum", 0.08, true, undefined], // soft-capped scores and a window on alternate layers in GroupQueryAttention; measured 0.047
    ["gemma3", "q4f16", "optimum", 0.03, true, undefined], // measured: 0.016
  ] as const)
    it(`runs a ${family} ${precision} export (${layout} layout${slidingWindow ? `, window ${slidingWindow}` : ""}) as the CPU does: prefill, steps, resampling gathers, a solve`, async () => {
      const dir = join(mkdtempSync(join(tmpdir(), "tsmc-real-gpu-")), family);
      writeModelFolder(dir, family, { precision, layout, slidingWindow });
      // The CPU computing 4-bit layers as the GPU does (in the activations' precision, not int8), so the two are comparable.
      const [gpu, cpu] = [
        await loadModel(dir, { device: "webgpu", threads: 1 }),
        await loadModel(dir, { device: "cpu", threads: 1, int8Compute: false }),
      ];
      try {
        assert.match(gpu.lm.device, /^webgpu/);
        assert.equal(/fixed-capacity KV cache/.test(gpu.lm.device), fixed, gpu.lm.device);
        const prompt = gpu.tokenizer.encodeProblem("Ava has 12 pens. How many pens does Ava have?");
        const [a, b] = [await gpu.lm.prefill(prompt), await cpu.lm.prefill(prompt)];
        assert.ok(maxAbsDiff(await logitsOf(a), await logitsOf(b)) < tolerance);
        let [g, c] = [a.state.select([0, 0, 0]), b.state.select([0, 0, 0])];
        a.state.dispose();
        b.state.dispose();
        for (let s = 0; s < 4; s++) {
          const tokens = [100 + s, 200 + s, 300 + s];
          const [x, y] = [await gpu.lm.step(g, tokens), await cpu.lm.step(c, tokens)];
          const diff = maxAbsDiff(await logitsOf(x), await logitsOf(y));
          assert.ok(diff < tolerance, `step ${s}: logits differ by ${diff}`);
          [g, c] = [x.state.select([2, 0, 1]), y.state.select([2, 0, 1])];
          x.state.dispose();
          y.state.dispose();
        }
        g.dispose();
        c.dispose();
        const r = await solve(gpu, "Ava has 12 pens. How many pens does Ava have?", {
          particles: 4,
          level: "step",
          resampling: "systematic",
          essThreshold: 0.5,
          resample: "adaptive",
          maxTokens: 12,
          temperature: 1,
          seed: 0,
        });
        assert.equal(r.particles.length, 4);
        assert.match(r.device, /^webgpu/);
      } finally {
        await gpu.lm.dispose();
        await cpu.lm.dispose();
      }
    });

  it("trains a twist on the GPU (train --device webgpu) for a Qwen2.5-layout q4 model: the value head on its hidden states and the line verifier, then solves with each", function () {
    const root = mkdtempSync(join(tmpdir(), "tsmc-train-gpu-"));
    const dir = join(root, "qwen");
    writeModelFolder(dir, "qwen2.5", { precision: "q4" });
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [join(ROOT, "dist/cli.js"), ...args], {
        cwd: root,
        encoding: "utf8",
        timeout: 280000,
        env: { ...process.env, TWISTED_SMC_CACHE_DIR: join(root, "cache") },
      });
    for (const loss of ["bce", "prm"]) {
      const out = join(root, `out-${loss}`);
      const r = cli(
        ...["train", "--model_name", dir, "--device", "webgpu", "--twist", "step", "--loss", loss, "--dataset", "synthetic"],
        ...["--num_examples", "2", "--num_epochs", "1", "--batch_size", "2", "--num_twist_samples", "2", "--output_length", "12"],
        ...["--output_dir", out],
      );
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^ {2}device: webgpu/m);
      assert.match(r.stdout, /^Done: 1 batches/m);
      const s = cli(
        "solve",
        "Ava has 12 pens. How many pens does Ava have?",
        "--model",
        dir,
        "--twist",
        join(out, "twist.json"),
        "--device",
        "webgpu",
        "--particles",
        "4",
        "--max-tokens",
        "12",
        "--json",
      );
      assert.equal(s.status, 0, s.stderr);
      assert.match(JSON.parse(s.stdout).device, /^webgpu/);
    }
  });

  it("runs an fp16 model with its KV cache in half precision on the GPU, writing the fp32 model's greedy solutions", async () => {
    const half = await model(FP16, "webgpu");
    const full = await model(MODEL_DIR, "cpu");
    const first = await half.lm.prefill([1, 5, 6]);
    for (const t of (first.state as KvCache).tensors) assert.deepEqual([t.location, t.type], ["gpu-buffer", "float16"]);
    first.state.dispose();
    await assertSameGreedy(half, full, 8);
  });

  describe("the toy-model statistics on a real four-token decoder on the GPU (drawing in its graph)", () => {
    toyStatisticsOnDecoder(async () => ({
      lm: (await model(FOUR_TOKENS, "webgpu")).lm,
      // The exact distribution from the CPU, read by the JavaScript softmax.
      logProbs: await enumerateDecoder((await model(FOUR_TOKENS, "cpu")).lm),
      reference: (await model(FOUR_TOKENS, "cpu")).lm,
    }));
  });

  it("frees every KV cache and every logits buffer it made in a twisted SMC run and in plain sampling", async () => {
    const { lm } = await model(FOUR_TOKENS, "webgpu");
    const [caches, logits] = [liveKvCaches(), liveDeviceLogits()];
    const run = await runTwistedSmc(lm, TOY_PROMPT, toyOptions({ particles: 16, essThreshold: 1, resample: "always", seed: 5 }));
    assert.ok(run.resampledAt.length > 0);
    await generate(lm, TOY_PROMPT, { numSamples: 8, maxTokens: 6, temperature: 1, seed: 1, isEos: (t) => t === TOY_EOS });
    assert.deepEqual([liveKvCaches(), liveDeviceLogits()], [caches, logits]);
  });

  it("leaves logits and hidden states on the GPU: draws are made there, only rows read in JavaScript come back", async () => {
    const { lm } = await model(GPT2, "webgpu");
    const row = lm.vocabSize * 4;
    const read = () => ({ ...lm.readback! });
    const options = {
      particles: 8,
      resampling: "systematic" as const,
      essThreshold: 0.5,
      maxTokens: 10,
      temperature: 1,
      seed: 2,
      text: { isEos: () => false, isLineEnd: () => false, decode: String },
    };
    // Step level, resampling at every line: all draws are made on the GPU (siblings and the prompt's row for K − 1 particles too).
    let before = read();
    const lineEvery3 = (t: number) => t % 3 === 0;
    let atBoundaries = 0;
    const step = await runTwistedSmc(lm, [1, 20, 30, 40], {
      ...options,
      level: "step",
      resample: "always",
      text: { ...options.text, isLineEnd: lineEvery3 },
      twist: { kind: "step", logValue: (i) => new Float64Array(i.prefixes.length) },
      onBoundary: (b) => (atBoundaries += b.particles.length),
    });
    assert.ok(step.resampledAt.length > 0);
    assert.equal(step.drawnInGraph, step.generatedTokens);
    // The step twist reads the hidden state of particles at a line's end, and nothing else comes back.
    assert.deepEqual(read(), { logits: before.logits, hidden: before.hidden + atBoundaries * lm.hiddenSize * 4 });
    before = read();
    // Token level with a low-rank token twist: evaluated on the GPU with the proposal.
    const head = TokenTwistHead.init(lm.hiddenSize, lm.vocabSize, 8, new Rng(3));
    const twist = await OnnxTokenTwist.create(head);
    const token = await runTwistedSmc(lm, [1, 20, 30, 40], { ...options, level: "token", resample: "adaptive", twist });
    await twist.dispose();
    assert.equal(token.drawnInGraph, token.generatedTokens);
    assert.deepEqual(read(), before, "nothing came back: the twist read the hidden states on the GPU");
    // Greedy decoding (no draw in the graph): each step brings back its rows, the last position only.
    before = read();
    const greedy = await generate(lm, [1, 20, 30, 40, 50, 60], {
      numSamples: 2,
      maxTokens: 5,
      temperature: 0,
      seed: 0,
      isEos: () => false,
    });
    assert.equal(lm.readback!.logits - before.logits, row * (1 + 2 * greedy.steps));
  });

  it("runs every node the engine adds on the GPU (but the drawn token's reshape): sampling head, KV reorder, rows and draw graphs", function () {
    // onnxruntime places what a provider lacks on the CPU silently, copying its tensors there and back:
    // its verbose log lists the placements (read from a child process, where the log goes).
    const dir = mkdtempSync(join(tmpdir(), "tsmc-placement-"));
    const head = TokenTwistHead.init(64, 332, 4, new Rng(2));
    // The GPU's graphs of a GPT-2, prepared here (a test's own copy: none relies on another's leftovers).
    const gpt2 = join(dir, "gpt2");
    cpSync(GPT2, gpt2, { recursive: true, filter: (src) => !src.includes(".smc.") });
    const { hiddenSize, vocabSize, numHeads, numKvHeads, headDim } = openModelFolder(gpt2).config;
    const prepared = (fixedCapacity: boolean) =>
      prepareForSmc(join(gpt2, "model.onnx"), {
        hiddenSize,
        vocabSize,
        sampler: true,
        fuse: { numHeads, numKvHeads, headDim, fixedCapacity },
      }).path;
    const graphs: [string, string][] = [
      ["the prepared GPT-2 (sampling head, fused layers, fixed-capacity cache)", prepared(true)],
      ["the prepared GPT-2 (sampling head, fused layers, growing cache)", prepared(false)],
      ["the KV reorder graph (fp16)", join(dir, "reorder.onnx")],
      ["the rows graph (fp16)", join(dir, "rows.onnx")],
      ["the twisted draw graph", join(dir, "draw.onnx")],
      ["the draw graph (fp16)", join(dir, "draw16.onnx")],
    ];
    writeFileSync(join(dir, "reorder.onnx"), kvReorderModel(4, DTYPE.float16));
    writeFileSync(join(dir, "rows.onnx"), logitRowsModel(DTYPE.float16));
    writeFileSync(join(dir, "draw.onnx"), drawModel(DTYPE.float, 332, head.p, "fewest-kernels"));
    writeFileSync(join(dir, "draw16.onnx"), drawModel(DTYPE.float16, 332, undefined, "fewest-kernels"));
    for (const [name, file] of graphs) {
      const script = `require("onnxruntime-node").InferenceSession.create(${JSON.stringify(file)}, { executionProviders: ["webgpu"], logSeverityLevel: 0, logVerbosityLevel: 0 }).then(() => process.exit(0), (e) => { console.error(e); process.exit(1); })`;
      const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", cwd: ROOT, timeout: 120000 });
      assert.equal(r.status, 0, `${name}: ${r.stderr.slice(-500)}`);
      const log = (r.stdout + r.stderr).split("\n").map((l) => l.replace(/^.*VerifyEachNodeIsAssignedToAnEp\]/, ""));
      const start = log.findIndex((l) => /Node\(s\) placed on \[CPUExecutionProvider\]/.test(l));
      const onCpu: string[] = [];
      for (let i = start + 1; start >= 0 && i < log.length && /^\s+\S+ \(.*\)$/.test(log[i]); i++) onCpu.push(log[i].trim());
      // Shape arithmetic belongs on the CPU, where a Reshape or Split reads its sizes: on the packed
      // input's dimensions (its split sizes, and the ids' shape the Gemm's way back to three axes takes).
      const shapeOnly =
        /^(Shape|Concat) \(smc_gemm\/batch_sequence(_\d+)?\)$|^(Gather|Sub|Div|Concat) \(smc_step\/(columns|token_columns|sequence|sizes|batch|ids_shape\/\S+)\)$/;
      const ours = onCpu.filter(
        (n) =>
          /\((smc_|draw\/|logit_rows\/|kv_reorder\/)/.test(n) &&
          !/^Reshape \((smc_sample|draw\/cdf)\/out_token\)$/.test(n) &&
          !shapeOnly.test(n),
      );
      assert.deepEqual(ours, [], `${name}: nodes on the CPU`);
      if (!name.startsWith("the prepared GPT-2"))
        assert.ok(
          onCpu.every((n) => /out_token/.test(n)),
          `${name}: ${onCpu.join(", ")}`,
        );
    }
  });

  it("solves a problem with the shipped model and line verifier as the CPU does", async () => {
    const results = [];
    for (const device of ["webgpu", "cpu"] as const) {
      const m = await model(MODEL_DIR, device);
      const twist = await loadTwistOption(undefined, m, "step");
      results.push(
        await solve(m, "Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?", {
          particles: 8,
          level: "step",
          resampling: "systematic",
          essThreshold: 0.5,
          resample: "adaptive",
          maxTokens: 64,
          temperature: 1,
          seed: 3,
          twist: twist?.twist,
        }),
      );
    }
    const [gpu, cpu] = results;
    assert.match(gpu.device, /^webgpu/);
    // Different draws (the GPU draws in its graph, the CPU here), the same answer on this easy problem.
    assert.equal(gpu.answer, cpu.answer);
    assert.equal(gpu.answer, "42");
  });

  it("runs the graph as exported on the GPU when the GPU cannot run its fused layers, and says so", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "tsmc-fused-")), "m");
    cpSync(GPT2, dir, { recursive: true, filter: (src) => !src.includes(".smc.") });
    const { hiddenSize, vocabSize, numHeads, numKvHeads, headDim } = openModelFolder(dir).config;
    // The GPU's default graph: fused, with a fixed-capacity cache.
    const fused = prepareForSmc(join(dir, "model.onnx"), {
      hiddenSize,
      vocabSize,
      sampler: true,
      fuse: { numHeads, numKvHeads, headDim, fixedCapacity: true },
    });
    assert.deepEqual([fused.fusedAttention, fused.fixedCapacity], [2, true]);
    // A fused graph this GPU rejects: its attention told of 3 heads, which 64 channels cannot make.
    const heads = (n: number) =>
      Buffer.from(
        message([
          [1, "num_heads"],
          [20, 2],
          [3, n],
        ]),
      );
    const bytes = readFileSync(fused.path);
    for (let at = bytes.indexOf(heads(numHeads)); at >= 0; at = bytes.indexOf(heads(numHeads), at + 1)) heads(3).copy(bytes, at);
    writeFileSync(fused.path, bytes);
    const m = await loadModel(dir, { device: "webgpu", threads: 1 });
    try {
      assert.match(m.lm.device, /^webgpu/);
      assert.match(
        (m.lm as { deviceChoice?: string }).deviceChoice ?? "",
        /^webgpu \(not used: webgpu: .* \(with its layers fused; the unfused graph was tried next\)\)$/,
      );
      const [a, b] = [await m.lm.prefill([1, 20, 30]), await (await model(GPT2, "cpu")).lm.prefill([1, 20, 30])];
      a.state.dispose();
      b.state.dispose();
      assert.ok(maxAbsDiff(await logitsOf(a), await logitsOf(b)) < 2e-3);
    } finally {
      await m.lm.dispose();
    }
  });

  it("measures what the KV cache's nodes cost on this GPU: every case of scripts/gpu/opCost.ts runs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tsmc-opcost-"));
    const results = await measureOpCosts({ k: 2, layers: 2, heads: 2, headDim: 8, cache: 4, capacity: 12 }, 6, OP_COST_CASES, {
      profile: join(dir, "p"),
    });
    assert.deepEqual(
      results.map((r) => r.case),
      [...OP_COST_CASES],
    );
    for (const r of results) {
      assert.equal(r.nodesPerStep, { attention: 2, neg: 4, concat: 4 + 5 }[r.case.split("-")[0]]);
      assert.ok(r.msPerStepMedian > 0 && r.msPerStepWithDrain > 0, JSON.stringify(r));
      // Its trace, as profile-summary.mjs reads it: 6 steps, each node's CPU time and GPU kernels.
      const trace = readdirSync(dir).find((f) => f.startsWith(`p-${r.case}_`))!;
      const summary = spawnSync(process.execPath, [join(ROOT, "scripts/gpu/profile-summary.mjs"), join(dir, trace)], {
        encoding: "utf8",
      }).stdout;
      assert.match(summary, /: 6 forward passes, [1-9]\d* GPU kernels timed/);
      assert.match(
        summary,
        new RegExp(
          `CPU time in nodes per pass \\(median\\): [\\d.]+ ms, by op type:\\n\\s+[\\d.]+ ms  ${{ attention: "\\w+Attention", neg: "Neg", concat: "(Concat|Transpose|Reshape)" }[r.case.split("-")[0]]}`,
        ),
      );
    }
    // And with onnxruntime's memory patterns off (planned anew for every new set of input shapes).
    const [off] = await measureOpCosts({ k: 2, layers: 2, heads: 2, headDim: 8, cache: 4, capacity: 12 }, 6, ["attention-growing"], {
      memPattern: false,
    });
    assert.equal(off.memPattern, false);
    assert.ok(off.msPerStepMedian > 0);
  });

  describe("when WebGPU cannot be used", () => {
    const cli = (args: string[], env: NodeJS.ProcessEnv) =>
      spawnSync(process.execPath, [join(ROOT, "dist/cli.js"), ...args], {
        env: { ...process.env, ...env },
        encoding: "utf8",
        timeout: 120000,
      });
    const problem = "Kira has 7 cards. She gets 5 more. How many cards does Kira have now?";

    it("auto passes over a driver that only runs on the CPU, and says so", function () {
      if (!REQUIRED) this.skip(); // only the software driver is known to be one
      const r = cli(["solve", problem, "--json", "--particles", "2", "--max-tokens", "8"], {});
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.match(out.device, /^cpu/);
      assert.match(out.deviceChoice, /webgpu: the only Vulkan driver runs on the CPU \(libvulkan_lvp\.so\)/);
    });

    it("a missing adapter gives a clear reason: auto falls back to the CPU, an explicit webgpu stops", () => {
      const none = { VK_DRIVER_FILES: "/nonexistent/icd.json", VK_ICD_FILENAMES: "/nonexistent/icd.json" };
      const auto = cli(["solve", problem, "--json", "--particles", "2", "--max-tokens", "8"], none);
      assert.equal(auto.status, 0, auto.stderr);
      assert.match(JSON.parse(auto.stdout).deviceChoice, /webgpu: no Vulkan driver is installed/);
      const forced = cli(["solve", problem, "--device", "webgpu", "--particles", "2", "--max-tokens", "8"], none);
      assert.notEqual(forced.status, 0);
      assert.match(forced.stderr, /WebGPU found no usable GPU adapter \(check the Vulkan driver: vulkaninfo --summary\)/);
      assert.match(forced.stderr, /try --device auto or cpu/);
      assert.doesNotMatch(forced.stderr, /at .*\.js:\d+/, "no stack trace");
    });

    it("a forward pass the GPU cannot run falls back to the CPU with the reason", async function () {
      // lavapipe cannot run a 2M-row step of this model (a shader would need 17 storage buffers; it
      // allows 16). A real GPU may well run it, so this runs with the software driver only.
      if (!REQUIRED) this.skip();
      const live = liveKvCaches();
      const gpu = await loadModel(GPT2, { device: "webgpu", threads: 1 });
      let cpu: LoadedModel | undefined;
      const rows = 2 ** 21;
      const where = await withCpuFallback(
        gpu,
        { device: "webgpu", threads: 1 },
        async (m) => {
          if (m.lm.device.startsWith("cpu")) return m.lm.device;
          const first = await m.lm.prefill([5]);
          const wide = first.state.select(new Array(rows).fill(0));
          first.state.dispose();
          (await m.lm.step(wide, new Array(rows).fill(6))).state.dispose();
          return m.lm.device;
        },
        (m) => (cpu = m),
      );
      assert.match(where, /^cpu/);
      const choice = (cpu!.lm as { deviceChoice?: string }).deviceChoice ?? "";
      assert.match(
        choice,
        /^cpu \(not used: .*webgpu: failed during the run: webgpu \(onnxruntime-node[^)]*\) failed in a forward pass of 2097152 rows × 1 tokens: .*use fewer particles or --device cpu\)/,
      );
      assert.equal(liveKvCaches(), live, "the failed pass freed its cache");
      await gpu.lm.dispose();
      await cpu!.lm.dispose();
    });
  });
});
