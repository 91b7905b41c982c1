import assert from "node:assert/strict";
import { cpSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { generate } from "../../src/engine/lm/generate";
import { DTYPE, GRAPH, modelBytes, tensorValueInfo } from "../../src/engine/lm/onnx/graphBuild";
import { bytesField } from "../../src/engine/lm/onnx/protoWire";
import { DRAW_INPUT, DRAW_OUTPUT, drawModel } from "../../src/engine/lm/onnx/logitGraphs";
import { SAMPLE_DRAWS, SAMPLE_INVERSE_TEMPERATURE, SAMPLE_UNIFORM, samplingHead, unpackDraws } from "../../src/engine/lm/onnx/samplingHead";
import { loadModel, LoadedModel } from "../../src/engine/lm/model/loadModel";
import { runTwistedSmc } from "../../src/engine/smc/twistedSmc";
import { solve } from "../../src/engine/solve";
import { Rng } from "../../src/engine/util/rng";
import { assertGraphDrawsMatchLogits, assertModelDrawsMatchLogits, inverseCdfDraw, logitsOf, MODEL_DIR } from "./helpers";
import { enumerateDecoder, toyStatisticsOnDecoder } from "./toyStatistics";

/** Tokens drawn inside the graph (the sampling head prepareGraph adds on request), here on the CPU. */
describe("drawing tokens in the graph", function () {
  this.timeout(120000);
  const fixtures = join(__dirname, "../fixtures");
  // The GPU's graph (fewest kernels: fused layers, the counted inverse CDF) runs on the CPU too.
  const folders: [string, string, { fewestKernels?: boolean; fixedCapacity?: boolean; batch?: number }][] = [
    ["the shipped model", MODEL_DIR, {}],
    ["a GPT-2", join(fixtures, "gpt2-tiny"), {}],
    ["a GPT-2 in the GPU's fewest kernels", join(fixtures, "gpt2-tiny"), { fewestKernels: true }],
    // 3 rows, which a fixed-capacity cache runs as 4: the padding row's draw is not returned.
    ["a GPT-2 with a fixed-capacity cache, 3 rows", join(fixtures, "gpt2-tiny"), { fewestKernels: true, fixedCapacity: true, batch: 3 }],
    ["the shipped model in fp16", join(fixtures, "tiny-math-llama-fp16"), {}],
    ["the shipped model in fp16 in the GPU's fewest kernels", join(fixtures, "tiny-math-llama-fp16"), { fewestKernels: true }],
  ];
  const opened = new Map<string, Promise<LoadedModel>>();
  const open = (dir: string, options: { fewestKernels?: boolean; fixedCapacity?: boolean } = {}) => {
    const key = `${dir}|${!!options.fewestKernels}|${!!options.fixedCapacity}`;
    if (!opened.has(key)) {
      // A copy, so the prepared graph with the head is written outside the repository.
      const copy = join(mkdtempSync(join(tmpdir(), "tsmc-head-")), "m");
      cpSync(dir, copy, { recursive: true, filter: (src) => !src.includes(".smc.") });
      opened.set(
        key,
        loadModel(copy, { threads: 1, sampleInGraph: true, fewestKernels: !!options.fewestKernels, fixedCapacity: options.fixedCapacity }),
      );
    }
    return opened.get(key)!;
  };
  after(async () => {
    for (const m of opened.values()) await (await m).lm.dispose();
  });

  it("is off on the CPU at a small vocabulary unless asked for", async () => {
    const { lm } = await loadModel(MODEL_DIR, { threads: 1 });
    assert.equal(lm.samplesInGraph, false);
    await lm.dispose();
  });

  for (const [name, dir, options] of folders) {
    it(`draws on ${name} the token the inverse CDF gives at each uniform, with log p, log q and the largest log p`, async () => {
      const { lm } = await open(dir, options);
      assert.equal((lm as { fixedCapacity?: boolean }).fixedCapacity ?? false, !!options.fixedCapacity);
      for (const temperature of [1, 0.7, 1.6]) await assertGraphDrawsMatchLogits(lm, temperature, options.batch);
    });

    it(`draws on ${name} afterwards from chosen rows, untwisted and from a low-rank token twist's proposal, as the inverse CDF gives`, async () => {
      const { lm } = await open(dir, options);
      for (const temperature of [1, 0.7]) await assertModelDrawsMatchLogits(lm, temperature);
    });
  }

  for (const layout of ["least-work", "fewest-kernels"] as const) {
    it(`finds the token by blocks as a scan of the whole row does (${layout}): a vocabulary not a multiple of the block, mass in the last block, runs of probability 0, u near 0 and 1`, async () => {
      const rng = new Rng(21);
      for (const V of [333, 50257]) {
        const session = await ort.InferenceSession.create(drawModel(DTYPE.float, V, undefined, layout), {
          executionProviders: ["cpu"],
          intraOpNumThreads: 1,
        });
        const only = (...tokens: number[]) => Float32Array.from({ length: V }, (_, i) => (tokens.includes(i) ? rng.normal() : -1e9));
        const rows = [
          Float32Array.from({ length: V }, () => 3 * rng.normal()),
          only(V - 1),
          only(0),
          only(40, V - 2), // two tokens blocks apart, all between of probability 0
          new Float32Array(V), // flat: every block boundary is a CDF step
          Float32Array.from({ length: V }, (_, i) => (i % 97 === 5 ? 2 * rng.normal() : -1e9)),
        ];
        const logits = new Float32Array(rows.length * V);
        rows.forEach((r, i) => logits.set(r, i * V));
        const picks: number[] = [];
        const uniforms: number[] = [];
        for (let r = 0; r < rows.length; r++) {
          // Off the flat row's steps (at (j + 0.5)/V), where float rounding could tip a draw either way.
          const us =
            r === 4
              ? Array.from({ length: 40 }, () => (Math.floor(rng.uniform() * V) + 0.5) / V)
              : [0, 1e-7, 0.5, 0.9999999, ...Array.from({ length: 36 }, () => rng.uniform())];
          for (const u of us) {
            picks.push(r);
            uniforms.push(u);
          }
        }
        for (const temperature of [1, 0.6]) {
          const out = await session.run({
            [DRAW_INPUT.logits]: new ort.Tensor("float32", logits, [rows.length, 1, V]),
            [DRAW_INPUT.rows]: new ort.Tensor("int64", BigInt64Array.from(picks, BigInt), [picks.length]),
            [DRAW_INPUT.uniform]: new ort.Tensor("float32", Float32Array.from(uniforms), [picks.length]),
            [DRAW_INPUT.inverseTemperature]: new ort.Tensor("float32", Float32Array.of(1 / temperature), [1]),
          });
          const draws = unpackDraws(out[DRAW_OUTPUT].data as Float32Array, picks.length);
          const expected = rows.map((row) => (u: number) => inverseCdfDraw(row, Math.fround(u), temperature));
          picks.forEach((r, i) => {
            const e = expected[r](uniforms[i]);
            assert.equal(draws.token[i], e.token, `V = ${V}, T = ${temperature}, row ${r}, u = ${uniforms[i]}`);
            assert.ok(Math.abs(draws.logq[i] - e.logq) < 1e-3, `V = ${V}, row ${r}: log q ${draws.logq[i]} vs ${e.logq}`);
          });
        }
        await session.release();
      }
    });
  }

  it("writes the head for the model's opset: ReduceMax takes its axes as an attribute before 18, as an input from 18 on", async () => {
    const V = 300;
    const rng = new Rng(4);
    const logits = Float32Array.from({ length: 3 * 2 * V }, () => 2 * rng.normal());
    const uniforms = [0.1, 0.6, 0.95];
    for (const [opset, layout] of [
      [13, "least-work"],
      [17, "fewest-kernels"],
      [18, "least-work"],
      [21, "fewest-kernels"],
    ] as const) {
      const model = modelBytes(
        "head",
        [...samplingHead(V, opset, layout), bytesField(GRAPH.input, tensorValueInfo("logits", DTYPE.float, ["batch", "sequence", V]))],
        opset,
      );
      const session = await ort.InferenceSession.create(model, { executionProviders: ["cpu"], intraOpNumThreads: 1 });
      const out = await session.run({
        logits: new ort.Tensor("float32", logits, [3, 2, V]),
        [SAMPLE_UNIFORM]: new ort.Tensor("float32", Float32Array.from(uniforms), [3]),
        [SAMPLE_INVERSE_TEMPERATURE]: new ort.Tensor("float32", Float32Array.of(1 / 0.8), [1]),
      });
      const draws = unpackDraws(out[SAMPLE_DRAWS].data as Float32Array, 3);
      uniforms.forEach((u, r) => {
        const e = inverseCdfDraw(logits.subarray((2 * r + 1) * V, (2 * r + 2) * V), Math.fround(u), 0.8);
        assert.equal(draws.token[r], e.token, `opset ${opset}, row ${r}`);
        assert.ok(
          Math.abs(draws.logpMax[r] - e.logpMax) < 1e-4,
          `opset ${opset}, row ${r}: largest log p ${draws.logpMax[r]} vs ${e.logpMax}`,
        );
      });
      await session.release();
    }
  });

  it("draws follow the tempered distribution (chi-square over 6,000 draws from one row)", async () => {
    const { lm } = await open(join(fixtures, "gpt2-tiny"));
    const n = 6000;
    const temperature = 0.8;
    const rng = new Rng(11);
    const first = await lm.prefill([1, 20, 30]);
    const out = await lm.step(first.state.select(new Array(n).fill(0)), new Array(n).fill(7), {
      uniforms: Array.from({ length: n }, () => rng.uniform()),
      temperature,
    });
    first.state.dispose();
    out.state.dispose();
    const V = lm.vocabSize;
    const row = Array.from((await logitsOf(out)).subarray(0, V), (x) => x / temperature);
    const m = Math.max(...row);
    const z = row.reduce((a, x) => a + Math.exp(x - m), 0);
    const counts = new Array(V).fill(0);
    for (const t of out.samples!.token) counts[t]++;
    let chi2 = 0,
      cells = 0,
      rareExpected = 0,
      rareObserved = 0;
    row.forEach((x, t) => {
      const expected = (n * Math.exp(x - m)) / z;
      if (expected < 5) {
        rareExpected += expected;
        rareObserved += counts[t];
        return;
      }
      chi2 += (counts[t] - expected) ** 2 / expected;
      cells++;
    });
    chi2 += (rareObserved - rareExpected) ** 2 / rareExpected;
    const df = cells;
    assert.ok(cells > 20, "enough well-populated cells to test");
    assert.ok(chi2 < df + 5 * Math.sqrt(2 * df), `chi2 ${chi2.toFixed(1)} with ${df} degrees of freedom`);
  });

  it("step-level SMC and plain sampling take their tokens from the graph and still solve", async () => {
    const model = await open(MODEL_DIR);
    const problem = "Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?";
    const r = await solve(model, problem, {
      particles: 16,
      level: "step",
      resampling: "systematic",
      essThreshold: 0.5,
      resample: "adaptive",
      maxTokens: 64,
      temperature: 1,
      seed: 0,
    });
    assert.equal(r.answer, "42");
    const prompt = model.tokenizer.encodeProblem(problem);
    const run = await runTwistedSmc(model.lm, prompt, {
      particles: 16,
      level: "step",
      resampling: "systematic",
      essThreshold: 0.5,
      resample: "always",
      maxTokens: 64,
      temperature: 1,
      seed: 1,
      text: model.tokenizer,
    });
    // All but the siblings after each resampling, and the first step's 15 copies of the prompt's one row.
    assert.ok(run.drawnInGraph > 0.6 * run.generatedTokens, `${run.drawnInGraph} of ${run.generatedTokens} drawn in the graph`);
    assert.ok(run.resampledAt.length > 0);
    const g = await generate(model.lm, prompt, {
      numSamples: 8,
      maxTokens: 64,
      temperature: 1,
      seed: 0,
      isEos: (t) => model.tokenizer.isEos(t),
    });
    const answers = g.sequences.map((s) => model.tokenizer.decode(s.tokens)).filter((t) => /#### 42/.test(t));
    assert.ok(answers.length >= 4, `${answers.length} of 8 samples end in 42`);
  });
});

describe("the toy-model statistics on a real four-token ONNX decoder", function () {
  this.timeout(120000);
  const dir = join(__dirname, "../fixtures/gpt2-four-tokens");
  const models: LoadedModel[] = [];
  after(async () => {
    for (const m of models) await m.lm.dispose();
  });
  for (const sampleInGraph of [false, true]) {
    describe(sampleInGraph ? "drawing in its graph" : "drawing in JavaScript", () => {
      toyStatisticsOnDecoder(async () => {
        // A copy, so the prepared graphs are written outside the repository.
        const copy = join(mkdtempSync(join(tmpdir(), "tsmc-four-")), "m");
        cpSync(dir, copy, { recursive: true, filter: (src) => !src.includes(".smc.") });
        const [lm, reference] = [
          await loadModel(copy, { threads: 1, sampleInGraph }),
          await loadModel(copy, { threads: 1, sampleInGraph: false }),
        ];
        models.push(lm, reference);
        return { lm: lm.lm, logProbs: await enumerateDecoder(reference.lm), reference: reference.lm };
      });
    });
  }
});
