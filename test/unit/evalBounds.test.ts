import assert from "node:assert/strict";
import { summarizeBounds } from "../../src/engine/eval/evaluate";

describe("eval's log Ẑ bounds", () => {
  // Per problem with an exact sample: [token, step] log Ẑ of SMC (lower) and conditional SMC (upper).
  const runs = [
    { lower: [-0.1, -0.3], upper: [0, -0.1] },
    { lower: [-2.0, -Infinity], upper: [-0.5, -0.4] }, // step found no correct particle
    { lower: [-0.5, -0.1], upper: [-0.2, -0.2] },
    { lower: [-Infinity, -Infinity], upper: [-1, -1] },
  ];

  it("measures every level on the same problems: those where every level's SMC found a correct particle", () => {
    const b = summarizeBounds(["token", "step"], runs, 5, 6, "the token- and step-level twists");
    assert.equal(b.problems, 2);
    assert.equal(b.withSample, 4);
    assert.deepEqual(
      b.levels.map((l) => [l.level, l.zeros]),
      [
        ["token", 1],
        ["step", 2],
      ],
    );
    // Problem 2's token-level −2.0 stays out: step has no finite value there.
    assert.ok(Math.abs(b.levels[0].lower.mean - -0.3) < 1e-12);
    assert.ok(Math.abs(b.levels[1].lower.mean - -0.2) < 1e-12);
    assert.ok(Math.abs(b.levels[0].upper.mean - -0.1) < 1e-12);
    assert.ok(Math.abs(b.levels[1].upper.mean - -0.15) < 1e-12);
    // Per problem: token − step lower +0.2 and −0.4, upper +0.1 and 0.
    assert.ok(Math.abs(b.tokenMinusStep!.lower.mean - -0.1) < 1e-12);
    assert.ok(Math.abs(b.tokenMinusStep!.lower.stderr - 0.3) < 1e-12);
    assert.ok(Math.abs(b.tokenMinusStep!.upper.mean - 0.05) < 1e-12);
    assert.match(b.note, /over the 2 of the 4 problems with a correct sample/);
    assert.match(b.note, /Ẑ = 0 in 5 runs on all 6 problems/);
  });

  it("one level alone: its own finite runs, no difference", () => {
    const b = summarizeBounds(
      ["step"],
      [
        { lower: [-0.2], upper: [-0.1] },
        { lower: [-Infinity], upper: [-0.3] },
      ],
      1,
      3,
      "the step-level twist",
    );
    assert.equal(b.problems, 1);
    assert.equal(b.levels[0].zeros, 1);
    assert.ok(Math.abs(b.levels[0].lower.mean - -0.2) < 1e-12);
    assert.equal(b.tokenMinusStep, undefined);
  });

  it("no problem left: the means are not numbers, not zeros", () => {
    const b = summarizeBounds(["token"], [{ lower: [-Infinity], upper: [-1] }], 1, 1, "the token-level twist");
    assert.equal(b.problems, 0);
    assert.ok(Number.isNaN(b.levels[0].lower.mean) && Number.isNaN(b.levels[0].upper.mean));
  });
});
