/**
 * Models with a sliding window in their export's mask (Gemma-2's alternate layers with soft-capped
 * scores, Gemma-3's, a Mistral-style window on every layer) run fused over a fixed-capacity cache whose
 * GroupQueryAttention nodes carry the window and the cap (fuseAttention.ts), on the CPU too: the
 * export's mask counted a held row's masked slot as one of the row's tokens.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, LoadedModel } from "../../src/engine/lm/model/loadModel";
import { openModelFolder, slidingWindowLayers } from "../../src/engine/lm/model/modelFolder";
import { MODEL } from "../../src/engine/lm/onnx/graphBuild";
import { readGraph } from "../../src/engine/lm/onnx/graphRead";
import { prepareModelBytes } from "../../src/engine/lm/onnx/prepareGraph";
import { fields } from "../../src/engine/lm/onnx/protoWire";
import { Family, writeModelFolder } from "../../scripts/fixtures/realLayouts";
import { assertSameAsFreshPrefill } from "./helpers";

describe("a sliding window carried by a fixed-capacity cache (Gemma-2, Gemma-3, Mistral-style)", function () {
  this.timeout(300000);
  const root = mkdtempSync(join(tmpdir(), "tsmc-window-"));
  const models: LoadedModel[] = [];
  const open = async (dir: string, options: Parameters<typeof loadModel>[1] = {}) => {
    const m = await loadModel(dir, { threads: 1, int8Compute: false, capacityStep: 8, ...options });
    models.push(m);
    return m;
  };
  const folder = (family: Family, precision: "fp32" | "fp16" | "q4f16" = "fp32", slidingWindow?: number) => {
    const dir = join(root, `${family}-${precision}${slidingWindow ? `-window${slidingWindow}` : ""}`);
    return { dir, file: writeModelFolder(dir, family, { precision, slidingWindow }) };
  };

  after(async () => {
    for (const m of models) await m.lm.dispose();
    rmSync(root, { recursive: true, force: true });
  });

  it("reads which layers slide from the config as transformers does", () => {
    const { dir } = folder("gemma2");
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    const windows = (over: Record<string, unknown>, modelType?: string) => {
      writeFileSync(join(dir, "config.json"), JSON.stringify({ ...config, ...over, ...(modelType ? { model_type: modelType } : {}) }));
      return slidingWindowLayers(openModelFolder(dir));
    };
    // Gemma-2: even layers; Gemma-3: every sliding_window_pattern-th layer is full (default 6); layer_types first.
    assert.deepEqual(windows({}), { size: 8, sliding: [true, false] });
    assert.deepEqual(windows({ num_hidden_layers: 6 }, "gemma3_text"), { size: 8, sliding: [true, true, true, true, true, false] });
    assert.deepEqual(windows({ num_hidden_layers: 4, sliding_window_pattern: 2 }, "gemma3"), {
      size: 8,
      sliding: [true, false, true, false],
    });
    assert.deepEqual(windows({ layer_types: ["full_attention", "sliding_attention"] }), { size: 8, sliding: [false, true] });
    // Qwen2: from max_window_layers on, and only with use_sliding_window; Mistral (any other): every layer.
    assert.deepEqual(windows({ num_hidden_layers: 3, max_window_layers: 1, use_sliding_window: true }, "qwen2"), {
      size: 8,
      sliding: [false, true, true],
    });
    assert.equal(windows({ use_sliding_window: false }, "qwen2"), undefined);
    assert.deepEqual(windows({ sliding_window: 4096 }, "mistral"), { size: 4096, sliding: [true, true] });
    assert.equal(windows({ sliding_window: null }, "mistral"), undefined);
  });

  it("fuses Gemma-2's soft-capped attention into GroupQueryAttention with its cap, the window on the even layers", () => {
    const { dir, file } = folder("gemma2");
    const f = openModelFolder(dir);
    const { hiddenSize, vocabSize, numHeads, numKvHeads, headDim } = f.config;
    const prepared = prepareModelBytes(readFileSync(join(dir, file)), {
      hiddenSize,
      vocabSize,
      fuse: { numHeads, numKvHeads, headDim, fixedCapacity: true, windows: slidingWindowLayers(f) },
    })!;
    assert.deepEqual([prepared.fusedAttention, prepared.fixedCapacity], [2, true]);
    const graph = readGraph([...fields(prepared.bytes)].find((x) => x.field === MODEL.graph)!.value);
    const gqa = graph.nodes.filter((n) => n.opType === "GroupQueryAttention");
    assert.deepEqual(
      gqa.map((n) => [n.ints.get("local_window_size")?.[0], n.floats.get("softcap")]),
      [
        [8, 50],
        [undefined, 50],
      ],
    );
    assert.ok(!graph.inputs.includes("attention_mask"));
    // Asked without the windows, a graph whose masks hold one is not given a fixed capacity.
    const blind = prepareModelBytes(readFileSync(join(dir, file)), {
      hiddenSize,
      vocabSize,
      fuse: { numHeads, numKvHeads, headDim, fixedCapacity: true, windows: { size: 8, sliding: [true, true] } },
    })!;
    assert.equal(blind.fixedCapacity, false);
  });

  for (const [family, precision, slidingWindow, tolerance] of [
    ["gemma2", "fp32", undefined, 1e-4],
    ["gemma2", "fp16", undefined, 0.05],
    ["gemma3", "fp32", undefined, 1e-4],
    ["gemma3", "q4f16", undefined, 0.05],
    ["qwen2.5", "fp32", 6, 1e-4],
  ] as const)
    it(`computes each row's fresh prefill across held rows on the CPU by default (${family} ${precision}${slidingWindow ? `, window ${slidingWindow} on every layer` : ""}), where the growing cache did not`, async () => {
      const { dir } = folder(family, precision, slidingWindow);
      const model = await open(dir);
      assert.match(model.lm.device, /^cpu \(onnxruntime-node, 1 thread; fixed-capacity KV cache\)$/);
      // The export as it is, over the growing cache: the reference for a prefill (no held slot in it).
      const growing = await open(dir, { fixedCapacity: false, fewestKernels: false });
      assert.doesNotMatch(growing.lm.device, /fixed-capacity/);
      assert.ok((await assertSameAsFreshPrefill(model, growing, tolerance)) < tolerance);
      // What the growing cache computes after held steps once a row is longer than its window.
      await assert.rejects(assertSameAsFreshPrefill(growing, growing, tolerance), /logits of row 0/);
    });
});
