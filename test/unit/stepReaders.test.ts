import assert from "node:assert/strict";
import { cpSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { CausalLM, DecoderState, GraphSampling, StepOutput } from "../../src/engine/lm/causalLm";
import { generate } from "../../src/engine/lm/generate";
import { loadModel, LoadedModel } from "../../src/engine/lm/model/loadModel";
import { DTYPE } from "../../src/engine/lm/onnx/graphBuild";
import { LAST_POSITION, logitRowsModel, ROWS_OUTPUT } from "../../src/engine/lm/onnx/logitGraphs";
import { LogitSessions } from "../../src/engine/lm/decoder/logitSessions";
import { lazyReaders, liveDeviceLogits } from "../../src/engine/lm/decoder/stepReaders";
import { runTwistedSmc, SmcCancelled, SmcOptions } from "../../src/engine/smc/twistedSmc";
import { TokenTwistHead } from "../../src/engine/twist/heads";
import { OnnxTokenTwist } from "../../src/engine/twist/onnxTwist";
import { Rng } from "../../src/engine/util/rng";
import { TOY_EOS, TOY_PROMPT, TOY_VOCAB } from "./toyModel";
import { randomLogPsi, stepTwistFrom, tokenTwistFrom, toyOptions } from "./toyStatistics";

/** A real decoder whose outputs count what callers read from them and whether they were released. */
class Watched implements CausalLM {
  made = 0;
  released = 0;
  rowsRead = 0;
  fullReads = 0;
  modelDraws = 0;
  hiddenRead = 0;
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
      readHidden:
        out.readHidden &&
        ((rows) => {
          this.hiddenRead += rows.length;
          return out.readHidden!(rows);
        }),
      drawRows:
        out.drawRows &&
        ((request) => {
          this.modelDraws += request.rows.length;
          return out.drawRows!(request);
        }),
      release: () => {
        if (!released) this.released++;
        released = true;
        out.release();
      },
    };
  }
}

describe("step outputs (logits, hidden states, draws) read on demand", function () {
  this.timeout(120000);

  it("reads everything at most once, serves rows from it or from a row reader, and refuses reads after release", async () => {
    const vocab = 3;
    const calls: string[] = [];
    let freed = 0;
    const live = liveDeviceLogits();
    const all = Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    const logits = lazyReaders(vocab, {
      all: async () => (calls.push("all"), all),
      some: async (rows) => (
        calls.push(`rows ${rows}`),
        Float32Array.from(rows.flatMap((r) => [...all.subarray(r * vocab, (r + 1) * vocab)]))
      ),
      free: () => freed++,
    });
    assert.equal(liveDeviceLogits(), live + 1);
    assert.deepEqual(
      (await logits.readRows([2, 0])).map((r) => [...r]),
      [
        [6, 7, 8],
        [0, 1, 2],
      ],
    );
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

  for (const [type, elem] of [
    ["float32", DTYPE.float],
    ["float16", DTYPE.float16],
  ] as const) {
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
      assert.deepEqual(
        [...(every.data as Float32Array)],
        [0, 1, 2, 3].flatMap((p) => at(1, p)),
      );
      await session.release();
    });
  }

  it("draws with several twists at once (more than it keeps), each evaluated with its own weights", async () => {
    const [V, H] = [5, 3];
    const sessions = new LogitSessions("cpu", 1, DTYPE.float, V, H, "cpu");
    const rng = new Rng(8);
    const logits = new ort.Tensor(
      "float32",
      Float32Array.from({ length: 2 * V }, () => rng.normal()),
      [2, 1, V],
    );
    const heads = Array.from({ length: 6 }, (_, i) => {
      const head = TokenTwistHead.init(H, V, 2, new Rng(30 + i));
      head.p.W.forEach((_, j) => (head.p.W[j] = rng.normal()));
      return head;
    });
    // The hidden state of two rows, as a model outputs it ([batch, seq, hidden]); the draws read rows 1 and 0.
    const hidden = Float32Array.from({ length: 2 * H }, () => rng.normal());
    const drawn = Float32Array.from([...hidden.subarray(H), ...hidden.subarray(0, H)]);
    const request = (head: TokenTwistHead) => ({ rows: [1, 0], uniforms: [0.3, 0.8], temperature: 1, twist: { weights: head.p } });
    // Concurrent draws, twice over every head: the first heads' graphs are evicted while others run.
    const draws = await Promise.all(
      [...heads, ...heads].map((h) => sessions.draw(logits, new ort.Tensor("float32", hidden, [2, 1, H]), request(h))),
    );
    draws.forEach((d, i) => {
      const expected = heads[i % heads.length].logPsiNext({ hidden: drawn, hiddenSize: H, prefixes: [[], []] });
      d.token.forEach((t, k) => assert.ok(Math.abs(d.logPsi![k] - expected[k * V + t]) < 1e-5, `draw ${i}, row ${k}`));
    });
    await sessions.dispose();
  });

  describe("who reads and releases them, on a decoder that draws in its graph", () => {
    let loaded: Promise<LoadedModel> | undefined;
    const open = () => {
      // A copy, so the prepared graph with the sampling head is written outside the repository.
      const copy = join(mkdtempSync(join(tmpdir(), "tsmc-logits-")), "m");
      cpSync(join(__dirname, "../fixtures/gpt2-four-tokens"), copy, { recursive: true, filter: (src) => !src.includes(".smc.") });
      return (loaded ??= loadModel(copy, { threads: 1, sampleInGraph: true }));
    };
    const prompt = TOY_PROMPT;
    const options = (over: Partial<SmcOptions>): SmcOptions =>
      toyOptions({ particles: 8, level: "step", resample: "never", seed: 4, ...over });

    it("step level reads no logits: the pass draws each row's token, the model the prompt's row for the other particles and the siblings", async () => {
      for (const resample of ["never", "always"] as const) {
        const lm = new Watched((await open()).lm);
        const run = await runTwistedSmc(lm, prompt, options({ resample, twist: stepTwistFrom(randomLogPsi) }));
        assert.equal(lm.rowsRead + lm.fullReads, 0);
        assert.equal(run.drawnInGraph, run.generatedTokens);
        if (resample === "never") assert.equal(lm.modelDraws, 8 - 1);
        else assert.ok(run.resampledAt.length > 0 && lm.modelDraws > 8 - 1);
        assert.equal(lm.released, lm.made);
      }
    });

    it("reads hidden states only for twists that read them, at line ends and for particles that end", async () => {
      for (const textOnly of [false, true]) {
        const lm = new Watched((await open()).lm);
        const run = await runTwistedSmc(lm, prompt, options({ resample: "always", twist: { ...stepTwistFrom(randomLogPsi), textOnly } }));
        const ended = run.particles.filter((p) => p.finishReason === "eos").length;
        if (textOnly) assert.equal(lm.hiddenRead, 0);
        else assert.ok(lm.hiddenRead >= ended && lm.hiddenRead > 0, `${lm.hiddenRead} rows for ${ended} ends`);
      }
      // With a listener that reads them (training), they are fetched at line ends even for a text-only twist.
      const lm = new Watched((await open()).lm);
      let seen = 0;
      await runTwistedSmc(
        lm,
        prompt,
        options({
          resample: "always",
          twist: { ...stepTwistFrom(randomLogPsi), textOnly: true },
          onBoundary: (b) => (seen += b.hidden ? b.particles.length : 0),
        }),
      );
      assert.ok(seen > 0 && lm.hiddenRead === seen, `${lm.hiddenRead} rows read, ${seen} seen`);
    });

    it("token level: a low-rank twist is evaluated where the model runs; a twist the model cannot evaluate reads the movers' rows", async () => {
      const head = TokenTwistHead.init((await open()).lm.hiddenSize, TOY_VOCAB, 2, new Rng(1));
      const lowRank = await OnnxTokenTwist.create(head);
      try {
        for (const twist of [lowRank, tokenTwistFrom(randomLogPsi, () => 0)]) {
          const lm = new Watched((await open()).lm);
          const run = await runTwistedSmc(lm, prompt, options({ level: "token", resample: "adaptive", twist }));
          if (twist === lowRank)
            assert.deepEqual([lm.rowsRead, run.drawnInGraph, lm.modelDraws], [0, run.generatedTokens, run.generatedTokens]);
          else assert.ok(lm.rowsRead > 0 && lm.rowsRead <= run.generatedTokens && run.drawnInGraph === 0, `${lm.rowsRead} rows read`);
          // The previous output is released as soon as every particle has moved past it.
          assert.ok(lm.maxLive <= 2, `${lm.maxLive} outputs alive at once`);
          assert.equal(lm.fullReads, 0);
          assert.equal(lm.released, lm.made);
        }
      } finally {
        await lowRank.dispose();
      }
    });

    it("a cancelled run and plain sampling release every output too", async () => {
      const lm = new Watched((await open()).lm);
      const ctl = new AbortController();
      await assert.rejects(runTwistedSmc(lm, prompt, options({ signal: ctl.signal, onStep: () => ctl.abort() })), SmcCancelled);
      assert.equal(lm.released, lm.made);
      const sampled = new Watched((await open()).lm);
      await generate(sampled, prompt, { numSamples: 4, maxTokens: 8, temperature: 1, seed: 2, isEos: (t) => t === TOY_EOS });
      assert.deepEqual(
        [sampled.rowsRead, sampled.modelDraws],
        [0, 3],
        "the model draws from the prompt's row for the three samples the pass did not draw for",
      );
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
