/**
 * An export's own GroupQueryAttention (onnxruntime-genai's model builder) taken as it is over a
 * fixed-capacity KV cache, on every device (adoptGroupQueryAttention.ts): what the graph edit does and
 * does not do, and that the decoder then computes what the Optimum export of the same weights does,
 * held rows included, sliding window included.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, LoadedModel } from "../../src/engine/lm/model/loadModel";
import { openModelFolder } from "../../src/engine/lm/model/modelFolder";
import { adoptGroupQueryAttention } from "../../src/engine/lm/onnx/adoptGroupQueryAttention";
import { SEQLENS_K, TOTAL_SEQUENCE_LENGTH } from "../../src/engine/lm/onnx/fuseAttention";
import { MODEL, node } from "../../src/engine/lm/onnx/graphBuild";
import { GraphInfo, readGraph, readNode } from "../../src/engine/lm/onnx/graphRead";
import { prepareModelBytes } from "../../src/engine/lm/onnx/prepareGraph";
import { fields } from "../../src/engine/lm/onnx/protoWire";
import { Family, randomWeights, writeModelFolder } from "../../scripts/fixtures/realLayouts";
import { assertSameAsFreshPrefill, assertSameAsGrowingCache } from "./helpers";

const graphOf = (model: Uint8Array): GraphInfo => readGraph([...fields(model)].find((f) => f.field === MODEL.graph)!.value);
const WINDOW = 6;

describe("an export's own GroupQueryAttention over a fixed-capacity cache (onnxruntime-genai's graphs)", function () {
  this.timeout(300000);
  const root = mkdtempSync(join(tmpdir(), "tsmc-gqa-"));
  const models: LoadedModel[] = [];
  const open = async (dir: string, options: Parameters<typeof loadModel>[1] = {}) => {
    const m = await loadModel(dir, { threads: 1, capacityStep: 8, int8Compute: false, ...options });
    models.push(m);
    return m;
  };
  /** The genai-built folder and the Optimum one of the same weights. */
  const pair = (family: Family, precision: "fp32" | "fp16" | "q4" | "q4f16", slidingWindow?: number) => {
    const weights = randomWeights(family);
    const name = `${family}-${precision}${slidingWindow ? "-window" : ""}`;
    const [genai, optimum] = [join(root, `${name}-genai`), join(root, `${name}-optimum`)];
    writeModelFolder(genai, family, { weights, precision, layout: "genai", slidingWindow });
    writeModelFolder(optimum, family, { weights, precision, slidingWindow });
    return { genai, optimum };
  };

  after(async () => {
    for (const m of models) await m.lm.dispose();
    rmSync(root, { recursive: true, force: true });
  });

  it("feeds the nodes the decoder's lengths instead of attention_mask's, every attribute kept, the mask's arithmetic gone", () => {
    const { genai } = pair("llama3.2", "fp32", WINDOW);
    const bytes = readFileSync(join(genai, "model.onnx"));
    const before = graphOf(bytes);
    const { hiddenSize, vocabSize } = openModelFolder(genai).config;
    const prepared = prepareModelBytes(bytes, { hiddenSize, vocabSize })!;
    assert.deepEqual([prepared.adoptedAttention, prepared.fixedCapacity, prepared.fusedAttention], [2, true, 0]);
    const after = graphOf(prepared.bytes);
    assert.ok(!after.inputs.includes("attention_mask"), after.inputs.join(", "));
    assert.ok(after.inputs.includes(SEQLENS_K) && after.inputs.includes(TOTAL_SEQUENCE_LENGTH), after.inputs.join(", "));
    assert.ok(!after.nodes.some((n) => n.opType === "ReduceSum" || n.name.startsWith("/model/attn_mask_reformat/")));
    const nodes = (g: GraphInfo) => g.nodes.filter((n) => n.opType === "GroupQueryAttention");
    assert.equal(nodes(after).length, 2);
    for (const [was, is] of nodes(before).map((n, i) => [n, nodes(after)[i]])) {
      assert.deepEqual(is.inputs, [...was.inputs.slice(0, 5), SEQLENS_K, TOTAL_SEQUENCE_LENGTH, ...was.inputs.slice(7)]);
      assert.deepEqual([is.outputs, is.ints, is.floats], [was.outputs, was.ints, was.floats]);
      assert.deepEqual([is.ints.get("local_window_size"), is.ints.get("do_rotary")], [[WINDOW], [1]]);
    }
  });

  it("leaves a graph as it is when the mask is read elsewhere or a layer's cache is not read by its own node", () => {
    const { genai } = pair("qwen2.5", "fp32");
    const graph = graphOf(readFileSync(join(genai, "model.onnx")));
    assert.equal(adoptGroupQueryAttention(graph).adopted, 2);
    // The mask read by one more node, as an output.
    const reader = readNode(node("Cast", ["attention_mask"], ["mask_out"], "mask_reader", { to: 1 }));
    const maskRead = { ...graph, nodes: [...graph.nodes, reader], outputs: new Map([...graph.outputs, ["mask_out", new Uint8Array()]]) };
    assert.deepEqual([adoptGroupQueryAttention(maskRead).adopted, adoptGroupQueryAttention(maskRead).graph], [0, maskRead]);
    // One layer's past keys read by another node too.
    const keyReader = readNode(node("Identity", ["past_key_values.0.key"], ["key_out"], "key_reader"));
    const keyRead = { ...graph, nodes: [...graph.nodes, keyReader], outputs: new Map([...graph.outputs, ["key_out", new Uint8Array()]]) };
    assert.equal(adoptGroupQueryAttention(keyRead).adopted, 0);
    // A graph with one GroupQueryAttention node fewer than its layers.
    const gqa = graph.nodes.find((n) => n.opType === "GroupQueryAttention")!;
    assert.equal(adoptGroupQueryAttention({ ...graph, nodes: graph.nodes.filter((n) => n !== gqa) }).adopted, 0);
  });

  // Half precision: within 0.02 (measured 0.0078, one half-precision step of logits near 10).
  for (const [family, precision, tolerance] of [
    ["llama3.2", "fp32", 1e-4],
    ["qwen2.5", "fp32", 1e-4],
    ["llama3.2", "q4", 1e-4],
    ["qwen2.5", "fp16", 0.02],
    ["qwen2.5", "q4f16", 0.02],
  ] as const)
    it(`computes what the Optimum export does across held rows, resamplings and growths on the CPU (${family} ${precision}), whatever fixedCapacity says`, async () => {
      const { genai, optimum } = pair(family, precision);
      const reference = await open(optimum);
      // The growing cache (the CPU's default) for the Optimum graph; the genai graph keeps a fixed
      // capacity even where one is not asked for: over a growing cache its nodes would write a row's next
      // keys at its count of attended tokens, into the slot a held row left masked (before: the hidden
      // states differed from the step after the first held row on).
      assert.doesNotMatch(reference.lm.device, /fixed-capacity/);
      for (const fixedCapacity of [undefined, false]) {
        const model = await open(genai, { fixedCapacity });
        assert.match(model.lm.device, /^cpu \(onnxruntime-node, 1 thread; fixed-capacity KV cache\)$/);
        const { capacities } = await assertSameAsGrowingCache(model, reference, tolerance);
        assert.deepEqual([...new Set(capacities)], [8, 16, 24]);
      }
    });

  for (const precision of ["fp32", "q4"] as const)
    it(`keeps a sliding window (local_window_size) over the row's own tokens across held rows: a fresh prefill's logits (llama3.2 ${precision}, window ${WINDOW})`, async () => {
      const { genai, optimum } = pair("llama3.2", precision, WINDOW);
      const model = await open(genai);
      assert.match(model.lm.device, /fixed-capacity KV cache/);
      // The Optimum export's mask carries the window; a fresh prefill leaves no hole in it.
      const worst = await assertSameAsFreshPrefill(model, await open(optimum), 1e-4);
      assert.ok(worst < 1e-4);
    });
});
