import assert from "node:assert/strict";
import { cpSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { CausalLM, DecoderState, GraphSampling, StepOutput } from "../../src/engine/lm/causalLm";
import { generate } from "../../src/engine/lm/generate";
import { loadModel, LoadedModel } from "../../src/engine/lm/loadModel";
import { DTYPE } from "../../src/engine/lm/onnx/graphBuild";
import { LAST_POSITION, logitRowsModel, ROWS_OUTPUT } from "../../src/engine/lm/onnx/logitRows";
import { lazyLogits, liveDeviceLogits } from "../../src/engine/lm/stepLogits";
import { runTwistedSmc, SmcCancelled, SmcOptions } from "../../src/engine/smc/twistedSmc";
import { TOY_EOS, TOY_PROMPT } from "./toyModel";
import { randomLogPsi, stepTwistFrom, tokenTwistFrom, toyOptions } from "./toyStatistics";

/** A real decoder whose outputs count what callers read from them and whether they were released. */
class Watched implements CausalLM {
  made = 0;
  released = 0;
  rowsRead = 0;
  fullReads = 0;
  /** The most outputs alive (made, not released) at once. */
  maxLive = 0;
  constructor(private readonly inner: CausalLM) {}
  get vocabSize() {
    return this.inner.vocabSize;
  }
  get hiddenSize() {
    return this.inner.hiddenSize;
  }
  get device() {
    return this.inner.device;
  }
  get samplesInGraph() {
    return this.inner.samplesInGraph;
  }
  async prefill(tokens: readonly number[], sampling?: GraphSampling) {
    return this.watch(await this.inner.prefill(tokens, sampling));
  }
  async step(state: DecoderState, tokens: readonly (number | null)[], sampling?: GraphSampling) {
    return this.watch(await this.inner.step(state, tokens, sampling));
  }
  async dispose() {}
  private watch(out: StepOutput): StepOutput {
    this.made++;
    this.maxLive = Math.max(this.maxLive, this.made - this.released);
    let released = false;
    return {
      ...out,
      readLogits: () => {
        this.fullReads++;
        return out.readLogits();
      },
      readRows: (rows) => {
        this.rowsRead += rows.length;
        return out.readRows(rows);
      },
      release: () => {
        if (!released) this.released++;
        released = true;
        out.release();
      },
    };
  }
}

describe("step logits read on demand", function () {
  this.timeout(120000);

  it("reads everything at most once, serves rows from it or from a row reader, and refuses reads after release", async () => {
    const vocab = 3;
    const calls: string[] = [];
    let freed = 0;
    const live = liveDeviceLogits();
    const all = Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    const logits = lazyLogits(
      vocab,
      async () => (calls.push("all"), all),
      async (rows) => (calls.push(`rows ${rows}`), Float32Array.from(rows.flatMap((r) => [...all.subarray(r * vocab, (r + 1) * vocab)]))),
      () => freed++,
    );
    assert.equal(liveDeviceLogits(), live + 1);
    assert.deepEqual((await logits.readRows([2, 0])).map((r) => [...r]), [[6, 7, 8], [0, 1, 2]]);
    assert.deepEqual(await logits.readRows([]), []);
    assert.equal(await logits.readLogits(), await logits.readLogits());
    assert.deepEqual([...(await logits.readRows([1]))[0]], [3, 4, 5]);
    assert.deepEqual(calls, ["rows 2,0", "all"], "rows after a full read come from it");
    logits.release();
    logits.release();
    assert.equal(freed, 1);
    assert.equal(liveDeviceLogits(), live);
    await assert.rejects(logits.readRows([0]), /after their step output was released/);
  });

  for (const [type, elem] of [["float32", DTYPE.float], ["float16", DTYPE.float16]] as const) {
    it(`the logit-rows graph returns the rows asked for, at the last position or all positions (${type})`, async () => {
      const session = await ort.InferenceSession.create(logitRowsModel(elem));
      const [b, s, v] = [3, 4, 5];
      const values = Array.from({ length: b * s * v }, (_, i) => i / 8);
      const data = type === "float32" ? Float32Array.from(values) : Uint16Array.from(values, toHalf);
      const run = async (rows: number[], from: number) => {
        const out = await session.run({
          logits: new ort.Tensor(type, data, [b, s, v]),
          rows: new ort.Tensor("int64", BigInt64Array.from(rows, BigInt), [rows.length]),
          from_position: new ort.Tensor("int64", BigInt64Array.of(BigInt(from)), [1]),
        });
        return out[ROWS_OUTPUT];
      };
      const at = (r: number, p: number) => values.slice((r * s + p) * v, (r * s + p + 1) * v);
      const last = await run([2, 0, 2], LAST_POSITION);
      assert.deepEqual(last.dims, [3, v]);
      assert.equal(last.type, "float32");
      assert.deepEqual([...(last.data as Float32Array)], [...at(2, s - 1), ...at(0, s - 1), ...at(2, s - 1)]);
      const every = await run([1], 0);
      assert.deepEqual(every.dims, [s, v]);
      assert.deepEqual([...(every.data as Float32Array)], [0, 1, 2, 3].flatMap((p) => at(1, p)));
      await session.release();
    });
  }

  describe("who reads and releases them, on a decoder that draws in its graph", () => {
    let loaded: Promise<LoadedModel> | undefined;
    const open = () => {
      // A copy, so the prepared graph with the sampling head is written outside the repository.
      const copy = join(mkdtempSync(join(tmpdir(), "tsmc-logits-")), "m");
      cpSync(join(__dirname, "../fixtures/gpt2-four-tokens"), copy, { recursive: true, filter: (src) => !src.includes(".smc.") });
      return (loaded ??= loadModel(copy, { threads: 1, sampleInGraph: true }));
    };
    const prompt = TOY_PROMPT;
    const options = (over: Partial<SmcOptions>): SmcOptions => toyOptions({ particles: 8, level: "step", resample: "never", seed: 4, ...over });

    it("step level without resampling reads one row: the prompt's, for the particles whose draw the graph did not make", async () => {
      const lm = new Watched((await open()).lm);
      const run = await runTwistedSmc(lm, prompt, options({ twist: stepTwistFrom(randomLogPsi) }));
      assert.equal(lm.rowsRead, 1);
      assert.equal(lm.fullReads, 0);
      assert.equal(run.drawnInGraph, run.generatedTokens - (8 - 1));
      assert.equal(lm.released, lm.made);
    });

    it("after a resampling only the siblings' rows are read; a token twist reads the movers' rows; every output is released", async () => {
      for (const over of [{ resample: "always" as const, twist: stepTwistFrom(randomLogPsi) }, { level: "token" as const, twist: tokenTwistFrom(randomLogPsi, () => 0) }]) {
        const lm = new Watched((await open()).lm);
        const run = await runTwistedSmc(lm, prompt, options(over));
        assert.ok(lm.rowsRead > 0 && lm.rowsRead <= run.generatedTokens - run.drawnInGraph, `${lm.rowsRead} rows for ${run.generatedTokens - run.drawnInGraph} draws outside the graph`);
        // Token level: the previous output is released as soon as every particle has moved past it.
        if (over.level === "token") assert.ok(run.drawnInGraph === 0 && lm.maxLive <= 2, `${lm.maxLive} outputs alive at once`);
        else assert.ok(run.resampledAt.length > 0 && run.drawnInGraph > 0);
        assert.equal(lm.fullReads, 0);
        assert.equal(lm.released, lm.made);
      }
    });

    it("a cancelled run and plain sampling release every output too", async () => {
      const lm = new Watched((await open()).lm);
      const ctl = new AbortController();
      await assert.rejects(runTwistedSmc(lm, prompt, options({ signal: ctl.signal, onStep: () => ctl.abort() })), SmcCancelled);
      assert.equal(lm.released, lm.made);
      const sampled = new Watched((await open()).lm);
      await generate(sampled, prompt, { numSamples: 4, maxTokens: 8, temperature: 1, seed: 2, isEos: (t) => t === TOY_EOS });
      assert.equal(sampled.rowsRead, 1, "the prompt's row, for the three samples the graph did not draw");
      assert.equal(sampled.released, sampled.made);
    });
  });
});

/** float → IEEE half bits (exact for the multiples of 1/8 used here). */
function toHalf(x: number): number {
  if (x === 0) return 0;
  const e = Math.floor(Math.log2(x));
  return ((e + 15) << 10) | Math.round((x / 2 ** e - 1) * 1024);
}
