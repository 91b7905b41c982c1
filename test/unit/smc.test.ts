import assert from "node:assert/strict";
import { RESAMPLING_SCHEMES } from "../../src/engine/smc/resampling";
import { runTwistedSmc, SmcOptions, SmcCancelled } from "../../src/engine/smc/twistedSmc";
import { SmcStepRecord } from "../../src/protocol/record";
import { Rng } from "../../src/engine/util/rng";
import { enumerateToy, exactTwist, TOY_MAX_TOKENS, TOY_PROMPT, toyDecode, ToyModel } from "./toyModel";
import { chiSquareOfSamples, logPhi, meanZ, randomLogPsi, stepTwistFrom, tokenTwistFrom, toyOptions } from "./toyStatistics";

const options = toyOptions;
const toyMeanZ = (over: Partial<SmcOptions>, runs: number) => meanZ(new ToyModel(), TOY_PROMPT, over, runs);

describe("twisted SMC on an enumerable toy model", function () {
  this.timeout(120000);
  const exact = exactTwist(logPhi);

  it("enumerates a proper distribution", () => {
    const total = enumerateToy().reduce((a, s) => a + Math.exp(s.logP), 0);
    assert.ok(Math.abs(total - 1) < 1e-9);
  });

  for (const resampling of RESAMPLING_SCHEMES) {
    for (const [twistName, twist] of [
      ["no twist", undefined],
      ["a random token twist", tokenTwistFrom(randomLogPsi, randomLogPsi)],
    ] as const) {
      it(`token level, ${resampling}, ${twistName}: mean Ẑ is within 3 standard errors of Z`, async () => {
        const { mean, se } = await toyMeanZ({ resampling, twist, logFinalPotential: logPhi, essThreshold: 0.8 }, 400);
        assert.ok(se > 0);
        assert.ok(Math.abs(mean - exact.z) < 3 * se, `mean ${mean} vs Z ${exact.z} (se ${se})`);
      });
    }
    it(`step level, ${resampling}, a random value twist: mean Ẑ is within 3 standard errors of Z`, async () => {
      const { mean, se } = await toyMeanZ(
        { level: "step", resampling, twist: stepTwistFrom(randomLogPsi), logFinalPotential: logPhi },
        400,
      );
      assert.ok(Math.abs(mean - exact.z) < 3 * se, `mean ${mean} vs Z ${exact.z} (se ${se})`);
    });
  }

  it("with the exact optimal token twist, every run returns Z exactly (zero variance)", async () => {
    const optimal = tokenTwistFrom(exact.logPsi, (p) => logPhi(toyDecode(p)));
    for (const resample of ["adaptive", "always", "never"] as const) {
      const { zs } = await toyMeanZ({ twist: optimal, logFinalPotential: logPhi, resample }, 30);
      // Exact up to the float32 precision of logits and twist values.
      for (const z of zs) assert.ok(Math.abs(z - exact.z) < 1e-6 * exact.z, `${z} vs ${exact.z}`);
    }
  });

  it("step level with the exact optimal value twist is unbiased too", async () => {
    const { mean, se } = await toyMeanZ({ level: "step", twist: stepTwistFrom(exact.logPsi), logFinalPotential: logPhi }, 400);
    assert.ok(Math.abs(mean - exact.z) < 3 * se, `mean ${mean} vs Z ${exact.z} (se ${se})`);
  });

  it("brackets log Z: plain SMC's log Ẑ below, conditional SMC seeded with exact target samples above", async () => {
    const twist = tokenTwistFrom(randomLogPsi, randomLogPsi);
    // Exact draws from σ ∝ p·φ over the enumerated sequences.
    const seqs = exact.sequences.map((s) => ({ ...s, w: Math.exp(s.logP + logPhi(toyDecode(s.tokens))) / exact.z }));
    const rng = new Rng("sigma");
    const drawSigma = () => {
      let u = rng.uniform();
      for (const s of seqs) if ((u -= s.w) < 0) return s.tokens;
      return seqs[seqs.length - 1].tokens;
    };
    const lm = new ToyModel();
    const lower: number[] = [],
      upper: number[] = [];
    for (let r = 0; r < 300; r++) {
      const base = options({ particles: 4, twist, logFinalPotential: logPhi, seed: r, essThreshold: 0.9 });
      lower.push((await runTwistedSmc(lm, TOY_PROMPT, base)).logZ);
      upper.push((await runTwistedSmc(lm, TOY_PROMPT, { ...base, clamp: drawSigma() })).logZ);
    }
    const stats = (xs: number[]) => {
      const m = xs.reduce((a, b) => a + b, 0) / xs.length;
      return { m, se: Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1) / xs.length) };
    };
    const lo = stats(lower),
      hi = stats(upper),
      logZ = Math.log(exact.z);
    assert.ok(lo.m < logZ + 3 * lo.se, `lower ${lo.m} vs log Z ${logZ}`);
    assert.ok(hi.m > logZ - 3 * hi.se, `upper ${hi.m} vs log Z ${logZ}`);
    assert.ok(hi.m > lo.m);
  });

  it("with ψ ≡ 1 and φ ≡ 1 the particles are samples from p (chi-square)", async () => {
    const c = await chiSquareOfSamples(new ToyModel(), TOY_PROMPT, enumerateToy(), 40, 500);
    assert.equal(c.resampled, 0);
    assert.ok(c.maxAbsLogZ < 1e-12);
    assert.deepEqual(c.impossible, [], "sequences the toy model cannot produce");
    assert.ok(c.chi2 < c.bound, `chi2 ${c.chi2.toFixed(1)} with ${c.df} degrees of freedom`);
  });

  it("is reproducible for a seed and records every step with parents and weights", async () => {
    const twist = tokenTwistFrom(randomLogPsi, randomLogPsi);
    const records: SmcStepRecord[] = [];
    const a = await runTwistedSmc(
      new ToyModel(),
      TOY_PROMPT,
      options({ twist, logFinalPotential: logPhi, seed: 7, resample: "always", onStep: (r) => records.push(r) }),
    );
    const b = await runTwistedSmc(new ToyModel(), TOY_PROMPT, options({ twist, logFinalPotential: logPhi, seed: 7, resample: "always" }));
    assert.deepEqual(a, b);
    assert.equal(records.length, a.steps);
    assert.deepEqual(
      records.filter((r) => r.resampled).map((r) => r.step),
      a.resampledAt,
    );
    assert.deepEqual(
      records.map((r) => r.ess),
      a.ess,
    );
    // Replaying the record rebuilds every final text.
    let texts = records[0].particles.map(() => "");
    for (const r of records) texts = r.particles.map((p) => texts[p.parent] + p.text);
    assert.deepEqual(
      texts,
      a.particles.map((p) => toyDecode(p.tokens)),
    );
  });

  it("does not spend a forward pass on finished particles", async () => {
    const lm = new ToyModel();
    const res = await runTwistedSmc(lm, TOY_PROMPT, options({ particles: 4, seed: 3 }));
    assert.ok(lm.forwardPasses <= TOY_MAX_TOKENS - 1);
    assert.equal(
      res.generatedTokens,
      res.particles.reduce((n, p) => n + p.tokens.length + (p.finishReason === "eos" ? 1 : 0), 0),
    );
  });

  it("reports a collapse when no particle can satisfy the final potential", async () => {
    const res = await runTwistedSmc(new ToyModel(), TOY_PROMPT, options({ logFinalPotential: () => -Infinity }));
    assert.equal(res.logZ, -Infinity);
    assert.match(res.collapsed ?? "", /every particle's weight is zero/);
  });

  it("stops with an error that names the step when the model or the twist gives NaN", async () => {
    class NaNModel extends ToyModel {
      async step(state: Parameters<ToyModel["step"]>[0], tokens: Parameters<ToyModel["step"]>[1]) {
        const out = await super.step(state, tokens);
        if (this.forwardPasses === 2) (await out.readLogits()).fill(NaN);
        return out;
      }
    }
    await assert.rejects(
      runTwistedSmc(new NaNModel(), TOY_PROMPT, options({})),
      /NaN in the model's logits at SMC step 2 \(particle \d+, token 3\)/,
    );
    const nanTwist = tokenTwistFrom(
      () => NaN,
      () => 0,
    );
    await assert.rejects(runTwistedSmc(new ToyModel(), TOY_PROMPT, options({ twist: nanTwist })), /NaN in the twist at SMC step 0/);
  });

  it("cancels within one step", async () => {
    const ctl = new AbortController();
    let seen = 0;
    const run = runTwistedSmc(
      new ToyModel(),
      TOY_PROMPT,
      options({ signal: ctl.signal, onStep: () => (++seen === 2 ? ctl.abort() : undefined) }),
    );
    await assert.rejects(run, SmcCancelled);
    assert.equal(seen, 2);
  });

  it("rejects a twist of the wrong level and bad options", async () => {
    const lm = new ToyModel();
    await assert.rejects(
      runTwistedSmc(lm, TOY_PROMPT, options({ level: "step", twist: tokenTwistFrom(randomLogPsi, randomLogPsi) })),
      /step \(value\) twist/,
    );
    await assert.rejects(runTwistedSmc(lm, TOY_PROMPT, options({ temperature: 0 })), /temperature/);
    await assert.rejects(runTwistedSmc(lm, TOY_PROMPT, options({ essThreshold: 2 })), /essThreshold/);
  });
});
