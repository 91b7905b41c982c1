/**
 * The verifier's per-operator base rates set from outcomes (src/engine/train/calibration.ts): the shifts
 * found are the maximum-likelihood ones, only the operators the samples use move, the verifier given is
 * left alone, and how it ranks lines within an operator is unchanged; with a result memory, what agreeing
 * with it is worth is fitted too.
 */
import assert from "node:assert/strict";
import { calibrateVerifier } from "../../src/engine/train/calibration";
import { logSigmoid } from "../../src/engine/twist/heads";
import { LineVerifier } from "../../src/engine/twist/lineVerifier";
import { ResultMemory } from "../../src/engine/twist/resultMemory";
import { Rng } from "../../src/engine/util/rng";

const logit = (p: number) => Math.log(p / (1 - p));

/** n one-line samples of a line, `right` of them ending right. */
function outcomes(line: string, n: number, right: number) {
  return { texts: Array.from({ length: n }, () => `${line}\n#### 1`), correct: Array.from({ length: n }, (_, i) => i < right) };
}

describe("verifier calibration (per-operator base rates from outcomes)", () => {
  it("moves each operator's lines to how often its samples end right, and no operator it did not see", () => {
    // w2 = 0: every line's logit is its operator's bias, so the maximum-likelihood shift is known.
    const v = LineVerifier.init(4, new Rng(1));
    const bias = Float32Array.from(v.p.bias);
    const params = v.parameters().map((p) => Float32Array.from(p));
    const c = calibrateVerifier(v, [outcomes("12 + 5 = 17", 100, 90), outcomes("12 * 5 = 60", 40, 20)]);
    assert.equal(c.samples, 140);
    assert.ok(Math.abs(c.shifts[0] - (logit(0.9) - bias[0])) < 1e-3, `+: ${c.shifts[0]}`);
    assert.ok(Math.abs(c.shifts[2] - (logit(0.5) - bias[2])) < 1e-3, `×: ${c.shifts[2]}`);
    assert.equal(c.shifts[1], 0);
    assert.equal(c.shifts[3], 0);
    assert.ok(c.after > c.before, `${c.before} → ${c.after}`);
    const [plus, times] = ["12 + 5 = 17", "12 * 5 = 60"].map((t) => Math.exp(c.verifier.logValueOfText(t)));
    assert.ok(Math.abs(plus - 0.9) < 1e-3 && Math.abs(times - 0.5) < 1e-3, `${plus} ${times}`);
    assert.deepEqual(v.parameters(), params, "the verifier given is left as it was");
  });

  it("keeps how a trained verifier ranks the lines of one operator, and fits a sample's product of lines", () => {
    const rng = new Rng(2);
    const v = LineVerifier.init(4, rng, 4, 6);
    for (const p of v.parameters()) for (let j = 0; j < p.length; j++) p[j] = 0.3 * rng.normal();
    // Two-line samples whose outcomes follow φ = Π σ(ℓ + 1.5) on their subtraction lines: the fit comes back near 1.5.
    const texts: string[] = [];
    const correct: boolean[] = [];
    const draw = new Rng(3);
    for (let i = 0; i < 4000; i++) {
      const a = 20 + draw.int(0, 79),
        b = draw.int(1, 19),
        c = a - b + draw.int(-2, 2);
      const text = `${a} - ${b} = ${c}\n${c} - 1 = ${c - 1}\n#### ${c - 1}`;
      const logPhi = v.encode(text).reduce((s, l) => s + logSigmoid(v.lineLogit(l) + 1.5), 0);
      texts.push(text);
      correct.push(draw.uniform() < Math.exp(logPhi));
    }
    const share = correct.filter(Boolean).length / correct.length;
    assert.ok(share > 0.2 && share < 0.8, `right: ${share}`);
    const c = calibrateVerifier(v, [{ texts, correct }]);
    assert.ok(Math.abs(c.shifts[1] - 1.5) < 0.2, `−: ${c.shifts[1]}`);
    const lines = ["50 - 3 = 47", "50 - 3 = 46", "71 - 12 = 59", "71 - 12 = 69"].map((t) => v.encode(t)[0]);
    const order = (w: LineVerifier) => lines.map((l) => w.lineLogit(l)).map((z, _, all) => all.filter((y) => y < z).length);
    assert.deepEqual(order(c.verifier), order(v));
    for (const l of lines) assert.ok(Math.abs(c.verifier.lineLogit(l) - v.lineLogit(l) - c.shifts[1]) < 1e-5);
  });

  it("with a result memory: fits what agreeing with it is worth per operator, and keeps the memory given out of the input", () => {
    const v = LineVerifier.init(4, new Rng(5));
    const memory = new ResultMemory(4, [
      { a: "12", op: "*", b: "5", c: "60" },
      { a: "8", op: "+", b: "5", c: "13" },
      { a: "9", op: "/", b: "3", c: "3" },
    ]);
    // × lines: not remembered, right half the time; remembered and agreeing, 90%; one column off, 10%.
    // + lines: always remembered and agreeing, right 70%: the shift and the hit weight say the same, and
    // the prior leaves the hit weight at 0. No ÷ line is written: its weights stay 0.
    const c = calibrateVerifier(
      v,
      [
        outcomes("14 * 3 = 42", 200, 100),
        outcomes("12 * 5 = 60", 200, 180),
        outcomes("12 * 5 = 61", 200, 20),
        outcomes("8 + 5 = 13", 200, 140),
      ],
      memory,
    );
    const phi = (t: string) => Math.exp(c.verifier.logValueOfText(t));
    for (const [t, share] of [
      ["14 * 3 = 42", 0.5],
      ["12 * 5 = 60", 0.9],
      ["12 * 5 = 61", 0.1],
      ["8 + 5 = 13", 0.7],
    ] as const)
      assert.ok(Math.abs(phi(t) - share) < 0.02, `${t}: φ ${phi(t)}, right ${share}`);
    assert.ok(c.hit[2] > 0 && c.miss[2] < 0, `×: hit ${c.hit[2]}, miss ${c.miss[2]}`);
    assert.ok(Math.abs(c.hit[0]) < 0.05, `+: hit ${c.hit[0]}`);
    assert.deepEqual([c.hit[3], c.miss[3], c.miss[0], c.hit[1], c.miss[1]], [0, 0, 0, 0, 0]);
    assert.ok(c.after > c.before);
    // The calibrated verifier reads the memory with these weights; the one given has none, and the memory keeps 0.
    assert.deepEqual(c.verifier.p.memory?.hit, c.hit);
    assert.deepEqual(c.verifier.p.memory?.miss, c.miss);
    assert.equal(v.p.memory, undefined);
    assert.deepEqual([...memory.hit, ...memory.miss], [0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it("leaves the verifier as it is when no sample holds a line it reads", () => {
    const v = LineVerifier.init(4, new Rng(4));
    const c = calibrateVerifier(v, [{ texts: ["#### 4", "no lines"], correct: [true, false] }]);
    assert.equal(c.samples, 0);
    assert.deepEqual(c.shifts, [0, 0, 0, 0]);
    assert.deepEqual(c.verifier.parameters(), v.parameters());
  });
});
