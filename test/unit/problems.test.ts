import assert from "node:assert/strict";
import { goldAnswer } from "../../src/engine/math/answer";
import { applyOp, MAX_STEPS, MAX_VALUE, MIN_STEPS, splitOf, synthesize, THEMES } from "../../src/engine/math/problems";

describe("synthetic problem generator", () => {
  const train = synthesize("train", 3000, 0);
  const test = synthesize("test", 1000, 0);

  it("is deterministic for a seed and differs across seeds", () => {
    assert.deepEqual(synthesize("train", 200, 0), train.slice(0, 200));
    const other = synthesize("train", 200, 1);
    assert.ok(other.filter((p, i) => p.question === train[i].question).length < 5);
  });

  it("keeps train and test disjoint by construction", () => {
    const trainQs = new Set(train.map((p) => p.question));
    assert.equal(test.filter((p) => trainQs.has(p.question)).length, 0);
    assert.ok(train.every((p) => splitOf(p.question) === "train"));
    assert.ok(test.every((p) => splitOf(p.question) === "test"));
    assert.equal(new Set(test.map((p) => p.question)).size, test.length, "no duplicates inside a split");
  });

  it("writes correct, exact, bounded steps and a GSM8K answer line", () => {
    const ops = new Set<string>();
    const lengths = new Set<number>();
    for (const p of [...train, ...test]) {
      assert.ok(p.steps.length >= MIN_STEPS && p.steps.length <= MAX_STEPS);
      lengths.add(p.steps.length);
      p.steps.forEach((s, i) => {
        ops.add(s.op);
        assert.equal(applyOp(s.a, s.op, s.b), s.c, `${s.a} ${s.op} ${s.b}`);
        for (const v of [s.a, s.b, s.c]) assert.ok(Number.isInteger(v) && v >= 0 && v <= MAX_VALUE, `value ${v} in ${p.question}`);
        if (i > 0) assert.equal(s.a, p.steps[i - 1].c, "each step continues from the last result");
        assert.ok(p.question.includes(String(s.b)), `operand ${s.b} appears in the question`);
      });
      assert.equal(goldAnswer(p.answer), p.final);
      assert.equal(p.answer.split("\n").length, p.steps.length + 1);
    }
    assert.deepEqual([...ops].sort(), ["*", "+", "-", "/"]);
    assert.deepEqual([...lengths].sort(), [1, 2, 3, 4, 5]);
  });

  it("uses every theme", () => {
    const seen = new Set(train.map((p) => p.theme));
    assert.deepEqual([...seen].sort(), THEMES.map((t) => t.name).sort());
  });
});
