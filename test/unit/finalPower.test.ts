import assert from "node:assert/strict";
import { join } from "node:path";
import {
  chooseFinalPower,
  chooseRunFinalPower,
  EndedPopulation,
  FINAL_POWERS,
  topAnswer,
  topAnswerBrier,
} from "../../src/engine/train/finalPower";
import { loadProblems } from "../../src/engine/train/data";
import { loadTwistOrVerifier } from "../../src/engine/twist/digitTwistFile";
import { LineVerifier } from "../../src/engine/twist/lineVerifier";
import { Rng } from "../../src/engine/util/rng";
import { shippedModel } from "./helpers";

/**
 * Populations whose answers' posteriors are right as often as they say when read at `truePower`: two
 * particles of equal weight before they ended on φ, answers 1 and 2, log φ of `x` and 0; 1 is right
 * with probability σ(truePower·x), the posterior of 1 read at that power.
 */
function calibratedAt(truePower: number, n: number, seed: string): EndedPopulation[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => {
    const x = (rng.uniform() - 0.5) * 3;
    const aRight = rng.uniform() < 1 / (1 + Math.exp(-truePower * x));
    return { texts: ["#### 1", "#### 2"], right: [aRight, !aRight], logWeights: [x - 1, -1], logPhi: [x, 0] };
  });
}

describe("the final power a run's solutions end on", () => {
  it("reads a population's posterior as if it had ended on φ^γ", () => {
    // Weights 1 : 1 : 2 ended on φ = 0.5, 0.5, 0.25; the third particle's answer has no key.
    const population: EndedPopulation = {
      texts: ["3 + 4 = 7\n#### 7", "#### 7", "no answer here"],
      right: [true, true, false],
      logWeights: [0, 0, Math.log(2)],
      logPhi: [Math.log(0.5), Math.log(0.5), Math.log(0.25)],
    };
    assert.deepEqual(topAnswer(population, 1), { probability: 0.5, right: true });
    // At γ = 2 each weight gains its φ: 0.5, 0.5, 0.5.
    const at2 = topAnswer(population, 2)!;
    assert.ok(Math.abs(at2.probability - 2 / 3) < 1e-12);
    // A population whose every weight died has no top answer, and counts nothing in the score.
    const dead = { ...population, logWeights: [-Infinity, -Infinity, -Infinity] };
    assert.equal(topAnswer(dead, 2), undefined);
    assert.ok(Math.abs(topAnswerBrier([population, dead], 2) - (2 / 3 - 1) ** 2 / 2) < 1e-12);
  });

  for (const truePower of [0.5, 1, 3]) {
    it(`chooses the power the posteriors are calibrated at (${truePower}), by the Brier score of the top answer`, () => {
      const populations = calibratedAt(truePower, 4000, `power:${truePower}`);
      const { power, brier } = chooseFinalPower(populations);
      assert.equal(power, truePower, `Brier scores ${brier.map((b) => b.toFixed(4)).join(", ")}`);
      assert.equal(brier.length, FINAL_POWERS.length);
    });
  }

  it("keeps φ as fitted (power 1) where another power scores better only within the problems' noise", () => {
    const few = calibratedAt(1.5, 40, "power:few");
    const { power, brier } = chooseFinalPower(few);
    assert.ok(Math.min(...brier) < brier[FINAL_POWERS.indexOf(1)], "another power scores better on these problems");
    assert.equal(power, 1);
    // With many problems calibrated at the same power, it is chosen.
    assert.equal(chooseFinalPower(calibratedAt(1.5, 20000, "power:many")).power, 1.5);
  });

  it("chooses 1 with nothing to choose on, or nothing between the powers", () => {
    // Every particle agrees: every power gives probability 1 to the right answer.
    const agreed: EndedPopulation = { texts: ["#### 3", "#### 3"], right: [true, true], logWeights: [0, 0], logPhi: [-1, -2] };
    const { power, brier } = chooseFinalPower([agreed, agreed]);
    assert.equal(power, 1);
    // 0 at every power, up to the rounding of the weights' normalisation.
    assert.equal(brier.length, FINAL_POWERS.length);
    assert.ok(
      brier.every((b) => b < 1e-12),
      `Brier scores ${brier.join(", ")}`,
    );
    assert.deepEqual(chooseFinalPower([]), { power: 1, brier: [] });
  });

  it("runs SMC at the run's level on its held-out problems: the shipped step-level verifier", async function () {
    this.timeout(120000);
    const model = await shippedModel();
    const verifier = loadTwistOrVerifier(join(model.folder.dir, "twist-step.json"), model.folder).head as LineVerifier;
    const problems = loadProblems("synthetic", "train", 24, 3).problems;
    const options = { seed: 3, maxTokens: 96, heldOut: problems };
    const chosen = (await chooseRunFinalPower(model, verifier, "step", verifier, options))!;
    assert.equal(chosen.problems, 24);
    assert.ok(FINAL_POWERS.includes(chosen.power));
    // Seeded by the run's seed and each problem's place: the same choice again, and the same scores.
    assert.deepEqual(await chooseRunFinalPower(model, verifier, "step", verifier, options), chosen);
    // The power the verifier file carries does not change what SMC ends on (φ) while choosing.
    assert.deepEqual(await chooseRunFinalPower(model, verifier.withFinalPower(3), "step", verifier, options), chosen);
    // Stopped by its signal, it chooses nothing.
    const ctl = new AbortController();
    ctl.abort();
    assert.equal(await chooseRunFinalPower(model, verifier, "step", verifier, { ...options, signal: ctl.signal }), undefined);
  });
});
