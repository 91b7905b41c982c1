/**
 * Decoders in the exact layouts of real Hub exports — Qwen2.5, Qwen3, Llama-3.2, Gemma-2, Gemma-3 and
 * Phi-3, with their real tokenizers and vocabularies, random weights, small widths — built at test time
 * by scripts/fixtures/realLayouts.ts (the Hub is not reachable from CI), each in every precision a
 * download holds (fp32, fp16, q4, q4f16 — also with the embedding quantized, GatherBlockQuantized —
 * int8, and fp32 with external data), plus the graphs
 * onnxruntime-genai's model builder writes (GroupQueryAttention, SkipSimplifiedLayerNormalization,
 * MatMulNBits already fused). Each must load from the file a download of it holds, be prepared for SMC
 * (hidden state and sampling head), compute what the fp32 graph does within its precision's tolerance,
 * solve and sample until the model's own EOS ids, and leave its folder as it was.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generate } from "../../src/engine/lm/generate";
import { loadModel, LoadedModel } from "../../src/engine/lm/model/loadModel";
import { GraphInfo, readGraph } from "../../src/engine/lm/onnx/graphRead";
import { MODEL } from "../../src/engine/lm/onnx/graphBuild";
import { fields } from "../../src/engine/lm/onnx/protoWire";
import { DEFAULT_SOLVE_OPTIONS, solve } from "../../src/engine/solve";
import { GraphLayout, Precision } from "../../scripts/fixtures/decoderGraph";
import { eosIdsOf, FAMILIES, Family, randomWeights, writeModelFolder } from "../../scripts/fixtures/realLayouts";
import { folderSnapshot, logitsOf } from "./helpers";

const PROBLEM = "Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?";
const CLI = join(__dirname, "../../dist/cli.js");

interface Variant {
  label: string;
  precision: Precision;
  layout?: GraphLayout;
  externalData?: boolean;
  quantizedEmbedding?: boolean;
  file: string;
}
const VARIANTS: Variant[] = [
  { label: "fp32", precision: "fp32", file: "onnx/model.onnx" },
  { label: "fp16", precision: "fp16", file: "onnx/model_fp16.onnx" },
  { label: "q4", precision: "q4", file: "onnx/model_q4.onnx" },
  { label: "q4f16", precision: "q4f16", file: "onnx/model_q4f16.onnx" },
  { label: "q4f16, quantized embedding", precision: "q4f16", quantizedEmbedding: true, file: "onnx/model_q4f16.onnx" },
  { label: "int8", precision: "int8", file: "onnx/model_int8.onnx" },
  { label: "fp32, external data", precision: "fp32", externalData: true, file: "model.onnx" },
];
const GENAI: Variant[] = [
  { label: "genai-built fp32", precision: "fp32", layout: "genai", file: "model.onnx" },
  { label: "genai-built q4", precision: "q4", layout: "genai", file: "model.onnx" },
  { label: "genai-built fp16", precision: "fp16", layout: "genai", file: "model.onnx" },
  { label: "genai-built q4f16", precision: "q4f16", layout: "genai", file: "model.onnx" },
];

/**
 * The largest difference of any logit from the fp32 graph's (over the prompt and two longer prefixes,
 * and a cached decode step), and the share of those positions whose top token agrees. About 1.5 times
 * the largest measured over the six families (REAL_LAYOUT_REPORT=1 prints them).
 */
const TOLERANCE: Record<string, { logits: number; top1: number }> = {
  fp32: { logits: 0, top1: 1 },
  "fp32, external data": { logits: 0, top1: 1 },
  "genai-built fp32": { logits: 2e-4, top1: 1 },
  fp16: { logits: 0.03, top1: 1 },
  q4: { logits: 2.2, top1: 0.75 },
  q4f16: { logits: 2.2, top1: 0.75 },
  "q4f16, quantized embedding": { logits: 2.2, top1: 0.75 },
  int8: { logits: 0.3, top1: 0.75 },
  "genai-built q4": { logits: 2.2, top1: 0.75 },
  "genai-built fp16": { logits: 0.03, top1: 1 },
  "genai-built q4f16": { logits: 2.2, top1: 0.75 },
};

const graphOf = (model: Uint8Array): GraphInfo => readGraph([...fields(model)].find((f) => f.field === MODEL.graph)!.value);
const argmax = (a: Float32Array) => a.reduce((best, x, i) => (x > a[best] ? i : best), 0);
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

/** The last position's logits over each prefix, and a decode step's after a broadcast to two rows (the KV cache path). */
async function logitRows(model: LoadedModel, prefixes: number[][]): Promise<Float32Array[]> {
  const V = model.lm.vocabSize;
  const rows: Float32Array[] = [];
  for (const p of prefixes) {
    const o = await model.lm.prefill(p);
    const l = await logitsOf(o);
    rows.push(l.slice(l.length - V));
    o.state.dispose();
  }
  const first = await model.lm.prefill(prefixes[0]);
  const next = prefixes[1][prefixes[0].length];
  const two = first.state.select([0, 0]);
  first.state.dispose();
  first.release();
  const step = await model.lm.step(two, [next, next]);
  const both = await logitsOf(step);
  step.state.dispose();
  rows.push(both.slice(V, 2 * V));
  return rows;
}

describe("decoders in the layouts of real Hub exports (random weights, real tokenizers)", function () {
  this.timeout(240000);
  let root: string;
  let cacheBefore: string | undefined;
  const warn = console.warn;
  const warnings: string[] = [];

  before(() => {
    root = mkdtempSync(join(tmpdir(), "tsmc-real-"));
    cacheBefore = process.env.TWISTED_SMC_CACHE_DIR;
    process.env.TWISTED_SMC_CACHE_DIR = join(root, "cache");
    console.warn = (...args: unknown[]) => void warnings.push(args.join(" "));
  });
  after(() => {
    console.warn = warn;
    if (cacheBefore === undefined) delete process.env.TWISTED_SMC_CACHE_DIR;
    else process.env.TWISTED_SMC_CACHE_DIR = cacheBefore;
    rmSync(root, { recursive: true, force: true });
  });

  /** The checks every variant passes (see the file's comment). */
  function variantTests(family: Family, variants: Variant[]) {
    let weights: ReturnType<typeof randomWeights>;
    let prefixes: number[][];
    let reference: Float32Array[];
    const eos = new Set(eosIdsOf(family));

    before(async () => {
      weights = randomWeights(family);
      const dir = join(root, `${family}-reference`);
      writeModelFolder(dir, family, { weights });
      const model = await loadModel(dir, { threads: 2, device: "cpu" });
      const prompt = model.tokenizer.encodeProblem(PROBLEM);
      // Six tokens the fp32 model writes greedily (EOS ignored): prefixes past the prompt.
      const g = await generate(model.lm, prompt, { numSamples: 1, maxTokens: 6, temperature: 0, seed: 0, isEos: () => false });
      const all = [...prompt, ...g.sequences[0].tokens];
      prefixes = [prompt, all.slice(0, prompt.length + 3), all];
      reference = await logitRows(model, prefixes);
      await model.lm.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    for (const v of variants) {
      const tol = TOLERANCE[v.label];
      it(`${v.label}: loads ${v.file}, is prepared for SMC, its logits within ${tol.logits} of fp32's, solves and samples until its EOS ids, its folder unchanged`, async () => {
        const dir = join(root, `${family}-${v.label.replace(/\W+/g, "-")}`);
        assert.equal(
          writeModelFolder(dir, family, {
            weights,
            precision: v.precision,
            layout: v.layout,
            externalData: v.externalData,
            quantizedEmbedding: v.quantizedEmbedding,
          }),
          v.file,
        );
        const before = folderSnapshot(dir);
        warnings.length = 0;
        const model = await loadModel(dir, { threads: 2, device: "cpu", sampleInGraph: true });
        try {
          assert.equal(model.folder.onnxFile, v.file);
          assert.deepEqual(
            warnings.filter((w) => /unprepared/.test(w)),
            [],
          );
          assert.equal(model.lm.samplesInGraph, true, "the sampling head is added");
          const first = await model.lm.prefill(prefixes[0]);
          assert.ok(first.readHidden, "last_hidden_state is added");
          assert.equal((await first.readHidden!([0]))[0].length, model.lm.hiddenSize);
          first.state.dispose();
          first.release();

          const rows = await logitRows(model, prefixes);
          const diff = Math.max(...rows.map((r, i) => maxDiff(r, reference[i])));
          const agree = rows.filter((r, i) => argmax(r) === argmax(reference[i])).length / rows.length;
          if (process.env.REAL_LAYOUT_REPORT) warn(`${family} ${v.label}: logits ${diff.toFixed(5)} top-1 ${agree}`);
          assert.ok(diff <= tol.logits, `logits differ from fp32's by ${diff}`);
          assert.ok(agree >= tol.top1, `the top token agrees at ${agree} of the positions`);

          for (const id of eos) assert.ok(model.tokenizer.isEos(id), `${id} ends the answer (generation_config.json's eos_token_id)`);
          const stoppedAt = new Set<number>();
          const isEos = (t: number) => {
            const end = model.tokenizer.isEos(t);
            if (end) stoppedAt.add(t);
            return end;
          };
          const sampled = await generate(model.lm, prefixes[0], { numSamples: 8, maxTokens: 48, temperature: 1, seed: 1, isEos });
          assert.ok(
            sampled.sequences.some((s) => s.finishReason === "eos"),
            "some sample ends at an EOS id",
          );
          assert.ok([...stoppedAt].every((t) => eos.has(t)));
          const r = await solve(model, PROBLEM, { ...DEFAULT_SOLVE_OPTIONS, particles: 8, maxTokens: 48 });
          assert.equal(r.modelFile, v.file);
          assert.ok(
            r.particles.some((p) => p.finishReason === "eos"),
            "some particle ends at an EOS id",
          );
        } finally {
          await model.lm.dispose();
        }
        assert.deepEqual(folderSnapshot(dir), before, "the model folder is unchanged");
        rmSync(dir, { recursive: true, force: true });
      });
    }
  }

  for (const family of FAMILIES) describe(family, () => variantTests(family, VARIANTS));

  describe("qwen2.5 and llama3.2 as onnxruntime-genai's model builder writes them (fused ops)", () => {
    it("holds GroupQueryAttention (rotary inside), SimplifiedLayerNormalization, SkipSimplifiedLayerNormalization and MatMulNBits, and no position_ids", () => {
      const dir = join(root, "genai-ops");
      writeModelFolder(dir, "llama3.2", { precision: "q4", layout: "genai" });
      const g = graphOf(readFileSync(join(dir, "model.onnx")));
      const ops = new Set(g.nodes.map((n) => n.opType));
      for (const op of ["GroupQueryAttention", "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization", "MatMulNBits"])
        assert.ok(ops.has(op), op);
      assert.ok(!ops.has("Softmax") && !g.inputs.includes("position_ids"));
      rmSync(dir, { recursive: true, force: true });
    });
    for (const family of ["qwen2.5", "llama3.2"] as const) describe(family, () => variantTests(family, GENAI));
  });

  it("read-only copies run as another user, with the prepared graph in memory where the cache cannot be written: every family, every precision once", function () {
    if (process.getuid?.() !== 0 || spawnSync("runuser", ["-u", "nobody", "--", "true"]).status !== 0) return this.skip(); // as root, permission bits do not stop writes
    const ro = mkdtempSync(join(root, "ro-"));
    const copies: [Family, Parameters<typeof writeModelFolder>[2]][] = [
      ["qwen2.5", { precision: "fp32", externalData: true }],
      ["qwen2.5", { precision: "q4" }],
      ["qwen3", { precision: "q4" }],
      ["llama3.2", { precision: "int8" }],
      ["gemma2", { precision: "fp16" }],
      ["gemma3", { precision: "q4f16", quantizedEmbedding: true }],
      ["phi3", { precision: "q4f16" }],
      ["llama3.2", { precision: "q4", layout: "genai" }],
    ];
    const dirs = copies.map(([family, options], i) => {
      const dir = join(ro, `${i}-${family}`);
      writeModelFolder(dir, family, options);
      return dir;
    });
    chmodSync(root, 0o755); // nobody must reach the folders
    chmodSync(ro, 0o755);
    spawnSync("chmod", ["-R", "a+rX,a-w", ro]);
    const before = folderSnapshot(ro);
    const unwritable = mkdtempSync(join(root, "cache-"));
    chmodSync(unwritable, 0o555);
    for (const model of dirs) {
      const args = ["solve", PROBLEM, "--model", model, "--particles", "4", "--max-tokens", "24", "--device", "cpu", "--json"];
      const r = spawnSync("runuser", ["-u", "nobody", "--", process.execPath, CLI, ...args], {
        encoding: "utf8",
        cwd: "/",
        timeout: 120000,
        env: { ...process.env, TWISTED_SMC_CACHE_DIR: unwritable, HOME: "/nonexistent" },
      });
      assert.equal(r.status, 0, `${model}: ${r.stderr}`);
      assert.match(r.stderr, /runs from memory/, model);
      assert.doesNotMatch(r.stderr, /unprepared/, model);
      assert.equal(JSON.parse(r.stdout).particles.length, 4);
    }
    assert.deepEqual(folderSnapshot(ro), before);
  });
});
