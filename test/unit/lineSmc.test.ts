/**
 * The line loop (src/engine/smc/lineSmc.ts, what the openai backend runs) on the enumerable toy model:
 * lines drawn token by token from the toy distribution up to its line end (token 0), its EOS or the
 * budget, exactly as a completions server draws them. Mean Ẑ must be within 3 standard errors of the
 * exact Z for every resampling scheme, with a random and with the optimal value twist, and with ψ ≡ 1
 * and φ ≡ 1 the particles must be samples of p — the same checks the local loop passes (smc.test.ts).
 */
import assert from "node:assert/strict";
import { LineProposer, ProposedLine, runLineSmc } from "../../src/engine/smc/lineSmc";
import { RESAMPLING_SCHEMES } from "../../src/engine/smc/resampling";
import { Rng } from "../../src/engine/util/rng";
import { enumerateToy, exactTwist, TOY_EOS, TOY_PROMPT, TOY_VOCAB, toyLogProbs, ToyModel } from "./toyModel";
import { chiSquareOfSamples, logPhi, meanZ, randomLogPsi, SmcRunner, stepTwistFrom, toyOptions } from "./toyStatistics";

/** The toy model as a line server: each prefix's next line, drawn from p, one request per call. */
function toyLineServer(seed: number): LineProposer & { requests: number } {
  const rng = new Rng(`lines:${seed}`);
  const draw = (logProbs: number[]) => {
    let u = rng.uniform();
    for (let s = 0; s < TOY_VOCAB; s++) {
      u -= Math.exp(logProbs[s]);
      if (u < 0) return s;
    }
    return TOY_VOCAB - 1;
  };
  const server = {
    requests: 0,
    async proposeLines(prefixes: readonly (readonly number[])[], maxTokens: number) {
      server.requests++;
      const lines = prefixes.map((prefix): ProposedLine => {
        const generated = prefix.slice(TOY_PROMPT.length);
        const tokens: number[] = [];
        while (tokens.length < maxTokens) {
          const s = draw(toyLogProbs([...generated, ...tokens]));
          if (s === TOY_EOS) return { tokens, ends: "eos" };
          tokens.push(s);
          if (s === 0) return { tokens, ends: "line" };
        }
        return { tokens, ends: "length" };
      });
      return { lines, requests: 1 };
    },
  };
  return server;
}

/** The toy twists read the prefixes only, never hidden states: what a server-steered run allows. */
const textTwist = (logPsi: (prefix: readonly number[]) => number) => ({ ...stepTwistFrom(logPsi), textOnly: true });

const lineRunner: SmcRunner = (prompt, options) => runLineSmc(toyLineServer(options.seed), prompt, { ...options, level: "step" });
const lineMeanZ = (over: Parameters<typeof meanZ>[2], runs: number) => meanZ(new ToyModel(), TOY_PROMPT, over, runs, lineRunner);

describe("the line loop (openai backend) on an enumerable toy model", function () {
  this.timeout(120000);
  const exact = exactTwist(logPhi);

  for (const resampling of RESAMPLING_SCHEMES) {
    it(`${resampling}, a random value twist: mean Ẑ is within 3 standard errors of Z`, async () => {
      const { mean, se } = await lineMeanZ({ level: "step", resampling, twist: textTwist(randomLogPsi), logFinalPotential: logPhi }, 400);
      assert.ok(se > 0);
      assert.ok(Math.abs(mean - exact.z) < 3 * se, `mean ${mean} vs Z ${exact.z} (se ${se})`);
    });
  }

  it("with the exact optimal value twist, unbiased too, and always resampling", async () => {
    for (const resample of ["adaptive", "always"] as const) {
      const { mean, se } = await lineMeanZ({ level: "step", resample, twist: textTwist(exact.logPsi), logFinalPotential: logPhi }, 400);
      assert.ok(Math.abs(mean - exact.z) < 3 * se, `${resample}: mean ${mean} vs Z ${exact.z} (se ${se})`);
    }
  });

  it("with ψ ≡ 1 and φ ≡ 1 the particles are samples from p (chi-square), one request a step", async () => {
    const c = await chiSquareOfSamples(new ToyModel(), TOY_PROMPT, enumerateToy(), 40, 500, (prompt, options) =>
      runLineSmc(toyLineServer(options.seed), prompt, { ...options, level: "step" }),
    );
    assert.equal(c.resampled, 0);
    assert.ok(c.maxAbsLogZ < 1e-12);
    assert.deepEqual(c.impossible, [], "sequences the toy model cannot produce");
    assert.ok(c.chi2 < c.bound, `chi2 ${c.chi2.toFixed(1)} with ${c.df} degrees of freedom`);
    const server = toyLineServer(7);
    const r = await runLineSmc(server, TOY_PROMPT, toyOptions({ particles: 16, level: "step" }));
    assert.equal(r.requests, server.requests);
    assert.equal(r.requests, r.steps, "every step is one request for all its particles");
  });
});
