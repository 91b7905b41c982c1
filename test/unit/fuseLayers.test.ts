import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { DeviceRunError } from "../../src/engine/lm/decoder/device";
import { KvCache } from "../../src/engine/lm/decoder/kvCache";
import { floatToHalf, halfToFloat, toFloat32 } from "../../src/engine/lm/decoder/tensorData";
import { loadModel, LoadedModel } from "../../src/engine/lm/model/loadModel";
import { openModelFolder } from "../../src/engine/lm/model/modelFolder";
import { cacheBudgetFor, fixedCapacityDefault } from "../../src/engine/lm/decoder/fixedCapacity";
import { fixedCapacityFromEnv } from "../../src/engine/environment";
import { writeModelFolder as writeRealLayout } from "../../scripts/fixtures/realLayouts";
import { GRAPH, MODEL, node, tensorValueInfo } from "../../src/engine/lm/onnx/graphBuild";
import { readGraph, readNode, smallTensorValues } from "../../src/engine/lm/onnx/graphRead";
import { applyRewrites } from "../../src/engine/lm/onnx/graphRewrite";
import { preparedDir, prepareModelBytes, PrepareOptions } from "../../src/engine/lm/onnx/prepareGraph";
import { bytesField, concat, fields, message } from "../../src/engine/lm/onnx/protoWire";
import { assertSameAsGrowingCache, HELD_ROW_BATCHES, assertSameGreedy, hiddenOf, logitsOf, maxAbsDiff, MODEL_DIR } from "./helpers";

const FIXTURES = join(__dirname, "../fixtures");

function options(dir: string): PrepareOptions {
  const { hiddenSize, vocabSize, numHeads, numKvHeads, headDim } = openModelFolder(dir).config;
  return { hiddenSize, vocabSize, fuse: { numHeads, numKvHeads, headDim } };
}

function opTypes(model: Uint8Array): Map<string, number> {
  const graph = readGraph([...fields(model)].find((f) => f.field === MODEL.graph)!.value);
  const counts = new Map<string, number>();
  for (const n of graph.nodes) counts.set(n.opType, (counts.get(n.opType) ?? 0) + 1);
  return counts;
}

/** The KV cache's tensors of a CPU output, as arrays. */
const cacheOf = (state: unknown) => (state as KvCache).tensors.map((t) => toFloat32(t));

/**
 * A prefill, a broadcast, a step with a held row and one after a resampling gather: the fused model's
 * logits, hidden states and KV cache must be the unfused one's.
 */
async function assertSameOutputs(fused: LoadedModel, plain: LoadedModel, tolerance: number): Promise<void> {
  const a = await fused.lm.prefill([1, 20, 30, 40, 7]);
  const b = await plain.lm.prefill([1, 20, 30, 40, 7]);
  let [x, y] = [a.state.select([0, 0, 0]), b.state.select([0, 0, 0])];
  const outs = [[a, b]];
  for (const [tokens, ancestors] of [
    [
      [5, null, 7],
      [2, 0, 1],
    ],
    [
      [3, 4, 5],
      [0, 0, 2],
    ],
  ] as const) {
    const [p, q] = [await fused.lm.step(x, tokens), await plain.lm.step(y, tokens)];
    outs.push([p, q]);
    [x, y] = [p.state.select([...ancestors]), q.state.select([...ancestors])];
  }
  for (const [p, q] of outs) {
    const rows = Array.from({ length: (p.state as KvCache).batch }, (_, r) => r);
    assert.ok(maxAbsDiff(await hiddenOf(p, rows), await hiddenOf(q, rows)) < tolerance);
    assert.ok(maxAbsDiff(await logitsOf(p), await logitsOf(q)) < tolerance);
    const [cp, cq] = [cacheOf(p.state), cacheOf(q.state)];
    assert.equal(cp.length, cq.length);
    cp.forEach((t, i) => assert.ok(maxAbsDiff(t, cq[i]) < tolerance, `cache tensor ${i}`));
    p.state.dispose();
    q.state.dispose();
  }
  x.dispose();
  y.dispose();
}

/** A prepared copy of `onnx` in the cache folder (prepareGraph.ts, preparedDir). */
const inCache = (onnx: string, name: string) => join(preparedDir(onnx), name);

describe("fusing a decoder's layers for the GPU (attention, residual layer norms)", () => {
  let dir: string;
  const models: LoadedModel[] = [];
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "tsmc-fuse-"))));
  afterEach(async () => {
    for (const m of models.splice(0)) await m.lm.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A copy of a fixture folder, loaded fused and unfused on the CPU. */
  async function both(source: string, name = "m"): Promise<[LoadedModel, LoadedModel, string]> {
    const copy = join(dir, name);
    cpSync(source, copy, { recursive: true, filter: (src) => !src.includes(".smc.") });
    // Both over the growing cache (a windowed model's default on the CPU is a fixed capacity), so that
    // a held row's outputs compare too.
    const fused = await loadModel(copy, { threads: 1, fewestKernels: true, fixedCapacity: false });
    const plain = await loadModel(copy, { threads: 1, fewestKernels: false, fixedCapacity: false });
    models.push(fused, plain);
    return [fused, plain, copy];
  }

  it("turns a GPT-2 export's attention into MultiHeadAttention, its residual layer norms into SkipLayerNormalization and its biased query/key/value projections into Gemm, computing the same", async () => {
    const model = readFileSync(join(FIXTURES, "gpt2-tiny/model.onnx"));
    const prepared = prepareModelBytes(model, options(join(FIXTURES, "gpt2-tiny")))!;
    assert.deepEqual([prepared.fusedAttention, prepared.fusedSkipLayerNorm, prepared.fusedProjectionBias], [2, 4, 2]);
    const [before, after] = [opTypes(model), opTypes(prepared.bytes)];
    assert.equal(after.get("MultiHeadAttention"), 2);
    assert.equal(after.get("SkipLayerNormalization"), 4);
    assert.equal(after.get("Gemm"), 2);
    // Per layer: the projections (qkv, out, MLP up and down) less the one now a Gemm.
    assert.deepEqual([before.get("MatMul"), after.get("MatMul")], [2 * 6 + 1, 2 * 3 + 1]);
    assert.equal(after.get("Softmax") ?? 0, 0);
    // The embeddings' sum (no sublayer) keeps its layer norm: 5 in the export, 1 left.
    assert.deepEqual([before.get("LayerNormalization"), after.get("LayerNormalization")], [5, 1]);
    // Each layer loses its score arithmetic, head reshapes and cache transposes.
    const count = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
    assert.ok(count(after) < count(before) - 2 * 20, `${count(before)} nodes, then ${count(after)}`);

    const [fused, plain] = await both(join(FIXTURES, "gpt2-tiny"));
    await assertSameOutputs(fused, plain, 1e-5);
  });

  it("fuses the rotary embeddings, attention and the RMS norms, with their residual sums (the shipped Llama): the same outputs and greedy solutions", async () => {
    const [fused, plain, copy] = await both(MODEL_DIR);
    const stamp = JSON.parse(readFileSync(inCache(join(copy, "onnx/model.onnx"), "model.fused.smc.json"), "utf8"));
    // 4 layers: queries and keys rotated; 2 RMS norms each and the final one, every one but the
    // first after a residual sum.
    assert.deepEqual(
      [stamp.fusedAttention, stamp.fusedRotary, stamp.fusedRmsNorm, stamp.fusedSkipLayerNorm, stamp.fusedProjectionBias],
      [4, 8, 9, 8, 0],
    );
    assert.equal(stamp.rotaryPositions, 8192);
    const after = opTypes(readFileSync(inCache(join(copy, "onnx/model.onnx"), "model.fused.smc.onnx")));
    assert.deepEqual(
      [
        after.get("SimplifiedLayerNormalization"),
        after.get("SkipSimplifiedLayerNormalization"),
        after.get("Pow") ?? 0,
        after.get("Sqrt") ?? 0,
      ],
      [1, 8, 0, 0],
    );
    // The angles come from the tables now: no Cos, Sin or rotate-half left.
    assert.deepEqual([after.get("RotaryEmbedding"), after.get("Cos") ?? 0, after.get("Sin") ?? 0, after.get("Neg") ?? 0], [8, 0, 0, 0]);
    await assertSameOutputs(fused, plain, 1e-4);
    await assertSameGreedy(fused, plain, 3);
  });

  it("fuses the RMS norms of the real layouts (x / √(mean(x²) + ε), float32 casts in fp16), their residual sums, Qwen2's q/k/v biases and the rotary embeddings: the same outputs", async () => {
    // [family, precision, RMS norms (2 a layer and the final one, plus Qwen3's and Gemma-3's per-head q/k norms, Gemma's 4 a layer),
    //  residual sums fused, projection biases made Gemms (Qwen2's q, k, v: 3 a layer), rotary embeddings (q and k a layer, the
    //  Unsqueeze over the heads after the Cos as newer transformers write it; not yet behind a per-head norm), tolerance]
    for (const [family, precision, norms, skips, biases, rotary, tolerance] of [
      ["qwen2.5", "fp32", 5, 4, 6, 4, 1e-4],
      ["qwen2.5", "fp16", 5, 4, 6, 4, 0.02],
      ["llama3.2", "fp32", 5, 4, 0, 4, 1e-4],
      ["qwen3", "fp32", 9, 4, 0, 0, 1e-4],
      ["gemma3", "fp32", 13, 0, 0, 0, 1e-4],
    ] as const) {
      const source = join(dir, `rms-${family}-${precision}`);
      const file = writeRealLayout(source, family, { precision });
      const bytes = readFileSync(join(source, file));
      const prepared = prepareModelBytes(bytes, options(source))!;
      assert.deepEqual(
        [prepared.fusedRmsNorm, prepared.fusedSkipLayerNorm, prepared.fusedProjectionBias, prepared.fusedRotary],
        [norms, skips, biases, rotary],
        `${family} ${precision}`,
      );
      const after = opTypes(prepared.bytes);
      assert.deepEqual([after.get("ReduceMean") ?? 0, after.get("Sqrt") ?? 0], [0, 0], `${family} ${precision}: no norm left unfused`);
      const [fused, plain] = await both(source, `rms-${family}-${precision}-copy`);
      assert.ok(fused.folder.onnxFile.endsWith(file.replace(/^onnx\//, "")), fused.folder.onnxFile);
      await assertSameOutputs(fused, plain, tolerance);
    }
  });

  it("fuses grouped-query attention with its widened keys and values taken whole, the cache left as exported: the same outputs", async () => {
    const [fused, plain, copy] = await both(join(FIXTURES, "llama-gqa-tiny"));
    const stamp = JSON.parse(readFileSync(inCache(join(copy, "model.onnx"), "model.fused.smc.json"), "utf8"));
    assert.deepEqual([stamp.fusedAttention, stamp.fusedRotary, stamp.fusedRmsNorm, stamp.fusedSkipLayerNorm], [2, 4, 5, 4]);
    const after = opTypes(readFileSync(inCache(join(copy, "model.onnx"), "model.fused.smc.onnx")));
    assert.deepEqual([after.get("MultiHeadAttention"), after.get("Softmax") ?? 0, after.get("Expand")], [2, 0, 4]);
    await assertSameOutputs(fused, plain, 1e-5);
  });

  it("keeps the KV cache at a fixed capacity with GroupQueryAttention (GPT-2, the shipped Llama, a grouped-query Llama, Qwen2.5's layout in fp32 and fp16): the growing cache's outputs, across held rows, resamplings, growths and batches that grow and shrink", async () => {
    const GQA = join(FIXTURES, "llama-gqa-tiny");
    // Qwen2.5's layout as Optimum exports it (grouped-query, biased q/k/v projections), in fp32 and in
    // fp16 (whose softmax is taken in float32 between two Casts).
    const qwen = (precision: "fp32" | "fp16") => {
      const folder = join(dir, `qwen-${precision}-src`);
      const file = writeRealLayout(folder, "qwen2.5", { precision });
      // A vocabulary this large gets the sampling head, prepared as "<file>.sampling…".
      return {
        source: folder,
        name: `qwen-${precision}`,
        stem: file.replace(/\.onnx$/, ""),
        prepared: `${basename(file, ".onnx")}.sampling`,
        tolerance: precision === "fp16" ? 0.02 : 1e-4,
      };
    };
    const sources = [
      { source: join(FIXTURES, "gpt2-tiny"), name: "gpt2", stem: "model", prepared: "model", tolerance: 1e-4 },
      { source: MODEL_DIR, name: "llama", stem: "onnx/model", prepared: "model", tolerance: 1e-4 },
      { source: GQA, name: "gqa", stem: "model", prepared: "model", tolerance: 1e-4 },
      qwen("fp32"),
      qwen("fp16"),
    ];
    for (const { source, name, stem, prepared, tolerance } of sources) {
      const copy = join(dir, name);
      cpSync(source, copy, { recursive: true, filter: (src) => !src.includes(".smc.") });
      const fixed = await loadModel(copy, { threads: 1, fewestKernels: true, fixedCapacity: true, capacityStep: 8 });
      const growing = await loadModel(copy, { threads: 1, fewestKernels: true });
      models.push(fixed, growing);
      const onnx = join(copy, stem);
      const stamp = JSON.parse(readFileSync(inCache(`${onnx}.onnx`, `${prepared}.fused.capacity.smc.json`), "utf8"));
      assert.equal(stamp.fixedCapacity, true);
      const ops = opTypes(readFileSync(inCache(`${onnx}.onnx`, `${prepared}.fused.capacity.smc.onnx`)));
      assert.deepEqual([ops.get("GroupQueryAttention"), ops.get("MultiHeadAttention") ?? 0], [stamp.fusedAttention, 0]);
      // A grouped-query cache is read as exported, with the node's kv_num_heads: the widening is gone.
      if (source === GQA || name.startsWith("qwen")) assert.deepEqual([stamp.fusedAttention, ops.get("Expand") ?? 0], [2, 0]);
      // The mask's arithmetic went with the attention_mask input.
      const graph = readGraph(
        [...fields(readFileSync(inCache(`${onnx}.onnx`, `${prepared}.fused.capacity.smc.onnx`)))].find((f) => f.field === MODEL.graph)!
          .value,
      );
      // Besides the cache, one input read on the CPU (the longest row) and one packing the rest (packStepInputs.ts).
      assert.deepEqual(
        graph.inputs.filter((n) => !n.startsWith("past_key_values.")),
        ["smc_total_sequence_length", "smc_step"],
        graph.inputs.join(", "),
      );
      const drawInputs = prepared.endsWith(".sampling") ? ["sample_uniform", "sample_inverse_temperature"] : [];
      assert.equal(stamp.packedStep, ["input_ids", "position_ids", "smc_seqlens_k", ...drawInputs].join(","));
      // 5 prompt tokens and up to 22 more: the capacity goes 8, then 16, then 24, and stays between growths.
      const { capacities, stored } = await assertSameAsGrowingCache(fixed, growing, tolerance);
      // On the CPU a pass runs the rows it has: no batch padded to a power of two (that is the GPU's, test/webgpu).
      assert.deepEqual(stored, HELD_ROW_BATCHES);
      // The per-pass inputs fed one by one (packStep: false, to time the difference): the same outputs.
      const apart = await loadModel(copy, { threads: 1, fewestKernels: true, fixedCapacity: true, capacityStep: 8, packStep: false });
      models.push(apart);
      const apartGraph = readGraph(
        [...fields(readFileSync(inCache(`${onnx}.onnx`, `${prepared}.fused.capacity.unpacked.smc.onnx`)))].find(
          (f) => f.field === MODEL.graph,
        )!.value,
      );
      assert.deepEqual(
        apartGraph.inputs.filter((n) => !n.startsWith("past_key_values.")).sort(),
        ["input_ids", "position_ids", "smc_seqlens_k", "smc_total_sequence_length", ...drawInputs].sort(),
      );
      await assertSameAsGrowingCache(apart, growing, tolerance);
      assert.deepEqual([...new Set(capacities)], [8, 16, 24], capacities.join(", "));
    }
  });

  it("prefills a long prompt into a fixed-capacity cache in chunks (a first of 1 to 64 tokens, then 64 at a time): the whole prompt's outputs", async () => {
    const copy = join(dir, "llama");
    cpSync(MODEL_DIR, copy, { recursive: true, filter: (src) => !src.includes(".smc.") });
    const fixed = await loadModel(copy, { threads: 1, fewestKernels: true, fixedCapacity: true, capacityStep: 128 });
    const growing = await loadModel(copy, { threads: 1, fewestKernels: true });
    models.push(fixed, growing);
    for (const length of [64, 65, 150]) {
      const prompt = Array.from({ length }, (_, i) => 3 + ((i * 37) % 300));
      const [a, b] = [await fixed.lm.prefill(prompt), await growing.lm.prefill(prompt)];
      // 150 tokens: 22, then 64 and 64; the capacity grew to 128, then to 256.
      assert.equal((a.state as KvCache).length, length <= 64 ? length : Math.ceil(length / 128) * 128);
      assert.ok(maxAbsDiff(await hiddenOf(a), await hiddenOf(b)) < 1e-4, `hidden state, ${length} tokens`);
      assert.ok(maxAbsDiff(await logitsOf(a), await logitsOf(b)) < 1e-4, `logits, ${length} tokens`);
      const [p, q] = [await fixed.lm.step(a.state, [9]), await growing.lm.step(b.state, [9])];
      assert.ok(maxAbsDiff(await logitsOf(p), await logitsOf(q)) < 1e-4, `the step after ${length} tokens`);
      p.state.dispose();
      q.state.dispose();
    }
  });

  it("prefills and teacher-forces a prompt in passes of at most prefillChunk tokens as in one pass (growing cache, fused or not, and fixed capacity)", async () => {
    const copy = join(dir, "gpt2");
    cpSync(join(FIXTURES, "gpt2-tiny"), copy, { recursive: true, filter: (src) => !src.includes(".smc.") });
    const whole = await loadModel(copy, { threads: 1, fewestKernels: false });
    models.push(whole);
    const prompt = Array.from({ length: 40 }, (_, i) => 3 + ((i * 53) % 320));
    const [a, full] = [await whole.lm.prefill(prompt), await whole.lm.encodeAll!(prompt)];
    const hidden = await hiddenOf(a);
    const logits = await logitsOf(a);
    a.state.dispose();
    for (const options of [{ fewestKernels: false }, { fewestKernels: true }, { fewestKernels: true, fixedCapacity: true }]) {
      const chunked = await loadModel(copy, { threads: 1, ...options, prefillChunk: 7 });
      models.push(chunked);
      const b = await chunked.lm.prefill(prompt);
      // 40 tokens: 5, then 7 at a time.
      assert.ok(maxAbsDiff(await hiddenOf(b), hidden) < 1e-4 && maxAbsDiff(await logitsOf(b), logits) < 1e-4, JSON.stringify(options));
      const c = await chunked.lm.step(b.state, [9]);
      const d = await whole.lm.step((await whole.lm.prefill(prompt)).state, [9]);
      assert.ok(maxAbsDiff(await logitsOf(c), await logitsOf(d)) < 1e-4, `the step after, ${JSON.stringify(options)}`);
      c.state.dispose();
      d.state.dispose();
      const teacher = await chunked.lm.encodeAll!(prompt);
      assert.equal(teacher.logits.length, full.logits.length);
      assert.ok(
        maxAbsDiff(teacher.logits, full.logits) < 1e-4 && maxAbsDiff(teacher.hidden!, full.hidden!) < 1e-4,
        `encodeAll, ${JSON.stringify(options)}`,
      );
    }
  });

  it("counts the cache shapes a fixed capacity made and, past its budget, reopens its sessions before a prompt when nothing is alive: the same outputs after, and a reopen that fails says why", async () => {
    const copy = join(dir, "budget");
    cpSync(join(FIXTURES, "gpt2-tiny"), copy, { recursive: true, filter: (src) => !src.includes(".smc.") });
    // 2 layers, 4 heads of 16, float32: a shape's three sets of 4 tensors [batch, 4, length, 16].
    const setBytes = (batch: number, length: number) => 3 * 4 * batch * 4 * length * 16 * 4;
    const fixed = await loadModel(copy, {
      threads: 1,
      fewestKernels: true,
      fixedCapacity: true,
      capacityStep: 8,
      cacheBudget: setBytes(3, 8),
    });
    models.push(fixed);
    const lm = fixed.lm as unknown as { retainedCacheBytes: number; sessionReopens: number };
    const run = async () => {
      const first = await fixed.lm.prefill([1, 20, 30, 40, 7]);
      first.release();
      const rows = first.state.select([0, 0, 0]);
      first.state.dispose();
      return fixed.lm.step(rows, [5, 6, 7]);
    };
    const a = await run();
    // The prompt made a 1 × 5 cache; the step, 3 rows (the CPU pads no batch), a capacity of 8.
    assert.equal(lm.retainedCacheBytes, setBytes(1, 5) + setBytes(3, 8));
    // Over budget, but a state is alive: no reopening.
    const held = await fixed.lm.prefill([3, 4]);
    held.release();
    assert.equal(lm.sessionReopens, 0);
    held.state.dispose();
    const logits = await logitsOf(a);
    a.state.dispose();
    // Nothing alive: the next prompt reopens first, and the outputs are the same.
    const b = await run();
    assert.equal(lm.sessionReopens, 1);
    assert.equal(lm.retainedCacheBytes, setBytes(1, 5) + setBytes(3, 8));
    assert.equal(maxAbsDiff(await logitsOf(b), logits), 0);
    b.state.dispose();
    // A graph gone from the folder: the reopen fails with the reason, and the decoder still disposes.
    rmSync(inCache(join(copy, "model.onnx"), "model.fused.capacity.smc.onnx"));
    await assert.rejects(
      fixed.lm.prefill([1, 2]),
      (e: Error) => e instanceof DeviceRunError && /failed to reopen the model to free its cache buffers/.test(e.message),
    );
    models.splice(models.indexOf(fixed), 1);
    await fixed.lm.dispose();
  });

  it("keeps a fixed capacity by default on a GPU only; takes it from TWISTED_SMC_FIXED_CAPACITY where the caller leaves it unset, and its budget from TWISTED_SMC_CACHE_BUDGET_MB; refuses values it does not know", async () => {
    assert.deepEqual([fixedCapacityDefault("cpu"), fixedCapacityDefault("webgpu"), fixedCapacityDefault("cuda")], [false, true, true]);
    assert.equal(fixedCapacityFromEnv({}), undefined);
    assert.equal(fixedCapacityFromEnv({ TWISTED_SMC_FIXED_CAPACITY: " " }), undefined);
    assert.equal(fixedCapacityFromEnv({ TWISTED_SMC_FIXED_CAPACITY: "yes" }), true);
    assert.equal(fixedCapacityFromEnv({ TWISTED_SMC_FIXED_CAPACITY: "0" }), false);
    assert.throws(
      () => fixedCapacityFromEnv({ TWISTED_SMC_FIXED_CAPACITY: "on" }),
      /TWISTED_SMC_FIXED_CAPACITY=on is not one of 1, yes, 0, no/,
    );
    // The cache budget: none on the CPU, 8 GiB on a GPU unless TWISTED_SMC_CACHE_BUDGET_MB says otherwise.
    assert.equal(cacheBudgetFor("cpu", undefined, {}), Infinity);
    assert.equal(cacheBudgetFor("webgpu", undefined, {}), 8 * 2 ** 30);
    assert.equal(cacheBudgetFor("webgpu", undefined, { TWISTED_SMC_CACHE_BUDGET_MB: "1500" }), 1500 * 2 ** 20);
    assert.equal(cacheBudgetFor("webgpu", 5, { TWISTED_SMC_CACHE_BUDGET_MB: "1500" }), 5);
    assert.throws(
      () => cacheBudgetFor("webgpu", undefined, { TWISTED_SMC_CACHE_BUDGET_MB: "lots" }),
      /the cache budget must be a number of bytes ≥ 0 \(TWISTED_SMC_CACHE_BUDGET_MB: MiB\), got lots/,
    );
    const copy = join(dir, "env");
    cpSync(join(FIXTURES, "gpt2-tiny"), copy, { recursive: true, filter: (src) => !src.includes(".smc.") });
    // Unset on the CPU, even in the GPU's kernels: the growing cache.
    const cpuDefault = await loadModel(copy, { threads: 1, fewestKernels: true });
    models.push(cpuDefault);
    assert.equal((cpuDefault.lm as { fixedCapacity?: boolean }).fixedCapacity, false);
    process.env.TWISTED_SMC_FIXED_CAPACITY = "1";
    try {
      const [on, off] = [
        await loadModel(copy, { threads: 1, fewestKernels: true }),
        await loadModel(copy, { threads: 1, fewestKernels: true, fixedCapacity: false }),
      ];
      models.push(on, off);
      assert.deepEqual(
        [(on.lm as { fixedCapacity?: boolean }).fixedCapacity, (off.lm as { fixedCapacity?: boolean }).fixedCapacity],
        [true, false],
      );
    } finally {
      delete process.env.TWISTED_SMC_FIXED_CAPACITY;
    }
  });

  it("keeps the growing cache where the config names a sliding window the export's mask does not hold", async () => {
    // The fixed capacity would put the config's window into attention the export computes without one
    // (slidingWindow.test.ts: exports whose masks hold theirs).
    const windowed = join(dir, "windowed");
    cpSync(join(FIXTURES, "gpt2-tiny"), windowed, { recursive: true, filter: (src) => !src.includes(".smc.") });
    const config = JSON.parse(readFileSync(join(windowed, "config.json"), "utf8"));
    writeFileSync(join(windowed, "config.json"), JSON.stringify({ ...config, sliding_window: 4 }));
    const slid = await loadModel(windowed, { threads: 1, fewestKernels: true, fixedCapacity: true });
    models.push(slid);
    assert.equal((slid.lm as { fixedCapacity?: boolean }).fixedCapacity, false);
  });

  it("refuses to run the fused graph past its rotary tables, with the reason (a GPU's run then goes on on the CPU)", async () => {
    const [fused, , copy] = await both(MODEL_DIR);
    await fused.lm.dispose();
    models.splice(models.indexOf(fused), 1);
    // A graph whose tables cover 8 positions, as its stamp says.
    const stampPath = inCache(join(copy, "onnx/model.onnx"), "model.fused.smc.json");
    writeFileSync(stampPath, JSON.stringify({ ...JSON.parse(readFileSync(stampPath, "utf8")), rotaryPositions: 8 }));
    const short = await loadModel(copy, { threads: 1, fewestKernels: true });
    models.push(short);
    const out = await short.lm.prefill([1, 2, 3, 4, 5, 6, 7, 8]);
    out.release();
    await assert.rejects(
      short.lm.step(out.state, [9]),
      (e: Error) => e instanceof DeviceRunError && /position 8 is past the 8 positions this graph's rotary tables cover/.test(e.message),
    );
  });

  it("fuses an fp16 export's rotary embeddings (fp16 tables) and norms but not its attention: the same greedy solutions", async () => {
    const [fused, plain, copy] = await both(join(FIXTURES, "tiny-math-llama-fp16"));
    const stamp = JSON.parse(readFileSync(inCache(join(copy, "onnx/model.onnx"), "model.fused.smc.json"), "utf8"));
    assert.deepEqual([stamp.fusedAttention, stamp.fusedRotary, stamp.fusedRmsNorm, stamp.fusedSkipLayerNorm], [0, 8, 9, 8]);
    const after = opTypes(readFileSync(inCache(join(copy, "onnx/model.onnx"), "model.fused.smc.onnx")));
    assert.deepEqual([after.get("RotaryEmbedding"), after.get("Softmax"), after.get("Pow") ?? 0], [8, 4, 0]);
    // Half precision rounds differently along the two paths; the fused one keeps more (float32 norms).
    await assertSameOutputs(fused, plain, 0.05);
    await assertSameGreedy(fused, plain, 3);
  });

  it("leaves what it cannot fuse as it is: a layer whose scores are read elsewhere", async () => {
    // The first layer's attention probabilities made a graph output too: only the second layer fuses.
    const onnx = join(FIXTURES, "gpt2-tiny/model.onnx");
    const model = readFileSync(onnx);
    const graphBytes = [...fields(model)].find((f) => f.field === MODEL.graph)!.value;
    const softmax = readGraph(graphBytes).nodes.find((n) => n.opType === "Softmax")!.outputs[0];
    const probe = bytesField(GRAPH.output, tensorValueInfo(softmax, 1, ["b", 2, "s", "t"]));
    const edited = concat(
      [...fields(model)].map((f) => (f.field === MODEL.graph ? bytesField(MODEL.graph, concat([graphBytes, probe])) : f.raw)),
    );
    const prepared = prepareModelBytes(edited, options(join(FIXTURES, "gpt2-tiny")))!;
    assert.equal(prepared.fusedAttention, 1);
    const copy = join(dir, "probe");
    cpSync(join(FIXTURES, "gpt2-tiny"), copy, { recursive: true, filter: (src) => !src.includes(".smc.") });
    writeFileSync(join(copy, "model.onnx"), edited);
    const fused = await loadModel(copy, { threads: 1, fewestKernels: true });
    const plain = await loadModel(join(FIXTURES, "gpt2-tiny"), { threads: 1, fewestKernels: false });
    models.push(fused, plain);
    await assertSameOutputs(fused, plain, 1e-5);
  });

  it("applies one of two rewrites that claim the same node, and drops what nothing reads any more", () => {
    const graph = readGraph(
      concat([
        bytesField(GRAPH.node, node("Relu", ["x"], ["a"], "first")),
        bytesField(GRAPH.node, node("Relu", ["a"], ["b"], "second")),
        bytesField(GRAPH.node, node("Sigmoid", ["x"], ["unused"], "dead")),
        bytesField(GRAPH.input, tensorValueInfo("x", 1, [2])),
        bytesField(GRAPH.output, tensorValueInfo("b", 1, [2])),
      ]),
    );
    const second = graph.nodes[1];
    const out = applyRewrites(graph, [
      { replaced: [second], anchor: second, newNodes: [node("Identity", ["a"], ["b"], "kept")] },
      { replaced: [second], anchor: second, newNodes: [node("Neg", ["a"], ["b"], "dropped")] },
    ]);
    assert.deepEqual(
      out.nodes.map((n) => n.name),
      ["first", "kept"],
    );
  });

  it("writes and reads back negative integer attributes (protobuf's ten-byte varints)", () => {
    const read = readNode(node("Softmax", ["x"], ["y"], "n", { axis: -1, perm: { ints: [0, -2, 3] }, epsilon: { float: 1e-5 } }));
    assert.deepEqual([read.ints.get("axis"), read.ints.get("perm")], [[-1], [0, -2, 3]]);
    assert.equal(read.floats.get("epsilon"), Math.fround(1e-5));
  });

  it("writes fp16 constants rounded to nearest even: every half value back to itself, ties to the even neighbour, overflow to ∞", () => {
    for (let h = 0; h < 0x10000; h++) {
      const x = halfToFloat(h);
      if (!Number.isNaN(x) && !(x === 0 && h === 0x8000)) assert.equal(floatToHalf(x), h, `half 0x${h.toString(16)}`);
    }
    assert.deepEqual([1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -25, 3 * 2 ** -26, 65520].map(floatToHalf), [0x3c00, 0x3c02, 0, 1, 0x7c00]);
  });

  it("reads small constants of every stored form (raw int64, float16, listed floats), and not large ones", () => {
    const raw = (type: number, bytes: number[]) =>
      message([
        [1, bytes.length / (type === 7 ? 8 : 2)],
        [2, type],
        [8, "t"],
        [9, Uint8Array.from(bytes)],
      ]);
    assert.deepEqual(smallTensorValues(raw(7, [2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])), {
      name: "t",
      values: [2, -1],
    });
    // float16 0x3c00 = 1, 0xc000 = −2.
    assert.deepEqual(smallTensorValues(raw(10, [0x00, 0x3c, 0x00, 0xc0]))!.values, [1, -2]);
    const listed = new Uint8Array(new Float32Array([0.125, 8]).buffer);
    assert.deepEqual(
      smallTensorValues(
        message([
          [1, 2],
          [2, 1],
          [4, listed],
        ]),
      )!.values,
      [0.125, 8],
    );
    assert.equal(
      smallTensorValues(
        message([
          [1, 1000],
          [2, 1],
          [9, new Uint8Array(4000)],
        ]),
      ),
      undefined,
    );
  });
});
