import assert from "node:assert/strict";
import {
  allProblems,
  formatResult,
  looksLikeMathProblem,
  planResultInsertion,
  problemAt,
  RESULT_MARKER,
} from "../../src/extension/markdown";

const DOC = [
  "# Homework", // 0
  "", // 1
  "Ava has 12 pens. She buys 30 more pens.", // 2
  "How many pens does Ava have now?", // 3
  "", // 4
  "- Ben has 24 apples. He gives away 9 apples.", // 5
  "  How many apples does Ben have now?", // 6
  "- Kira has 7 cards. How many cards?", // 7
  "", // 8
  "> A bus travels 40 miles each hour for 3 hours.", // 9
  "> How many miles is that?", // 10
  "", // 11
  "## Problem 4", // 12
  "", // 13
  "A shop sells 5 boxes of 6 eggs. How many eggs?", // 14
  "", // 15
  "```", // 16
  "x = 1 + 2 + 3 apples pens cards", // 17
  "```", // 18
].join("\n");

const offsetOf = (line: number, col = 0) =>
  DOC.split("\n")
    .slice(0, line)
    .reduce((n, l) => n + l.length + 1, 0) + col;

describe("finding problems in Markdown", () => {
  it("takes the paragraph under the cursor", () => {
    const p = problemAt(DOC, offsetOf(3, 5))!;
    assert.equal(p.text, "Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?");
    assert.equal(DOC.slice(p.start, p.end), "Ava has 12 pens. She buys 30 more pens.\nHow many pens does Ava have now?");
  });

  it("takes one list item with its continuation line, without the marker", () => {
    assert.equal(problemAt(DOC, offsetOf(6, 4))!.text, "Ben has 24 apples. He gives away 9 apples. How many apples does Ben have now?");
    assert.equal(problemAt(DOC, offsetOf(7))!.text, "Kira has 7 cards. How many cards?");
  });

  it("takes a whole blockquote and a heading's section", () => {
    assert.equal(problemAt(DOC, offsetOf(9))!.text, "A bus travels 40 miles each hour for 3 hours. How many miles is that?");
    assert.equal(problemAt(DOC, offsetOf(12, 3))!.text, "A shop sells 5 boxes of 6 eggs. How many eggs?");
  });

  it("finds nothing on a blank line or inside a code fence", () => {
    assert.equal(problemAt(DOC, offsetOf(4)), undefined);
    assert.equal(problemAt(DOC, offsetOf(17, 2)), undefined);
  });

  it("lists every problem of a file in order, skipping headings and code", () => {
    assert.deepEqual(
      allProblems(DOC).map((p) => p.text.slice(0, 12)),
      ["Ava has 12 p", "Ben has 24 a", "Kira has 7 c", "A bus travel", "A shop sells"],
    );
  });

  it("tells math from non-math", () => {
    assert.equal(looksLikeMathProblem("Ava has 12 pens. How many?"), true);
    assert.equal(looksLikeMathProblem("Homework"), false);
    assert.equal(looksLikeMathProblem("just some words here"), false);
    assert.equal(looksLikeMathProblem("1 + 2"), false);
  });
});

describe("writing results into Markdown", () => {
  const clear = { kind: "clear", summary: "42 (posterior 87.5%)" } as const;
  const result = formatResult({
    answer: "42",
    probability: 0.875,
    confidence: clear,
    particles: 16,
    level: "token",
    twist: "twist.json",
    openRunUri: "command:twistedSmc.openRun?%5B%22r1%22%5D",
  });

  it("formats the answer, its posterior, the particles and a link to the run", () => {
    assert.equal(
      result,
      `> ${RESULT_MARKER} Answer: **42** (posterior 87.5%, 16 particles, token-level twisted SMC) · [open run](command:twistedSmc.openRun?%5B%22r1%22%5D)`,
    );
  });

  it("says a tie is a tie, marks an uncertain answer and a problem outside the model's depth, and escapes the answer", () => {
    const base = { particles: 16, level: "step", twist: "twist-step.json" };
    const tie = formatResult({
      ...base,
      answer: "806",
      probability: 0.25,
      confidence: { kind: "tie", tied: ["806", "886", "786"], summary: "" },
    });
    assert.equal(tie, `> ${RESULT_MARKER} Answer: tied — **806**, **886** or **786** at 25.0% each (16 particles, step-level twisted SMC)`);
    const low = formatResult({ ...base, answer: "-3.5", probability: 0.3125, confidence: { kind: "uncertain", summary: "" } });
    assert.equal(low, `> ${RESULT_MARKER} Answer: **-3.5**, uncertain (posterior 31.3%, 16 particles, step-level twisted SMC)`);
    const deep = formatResult({
      ...base,
      answer: "42",
      probability: 0.9,
      confidence: { kind: "clear", summary: "", outOfDepth: "tiny-math-llama is out of its depth here" },
    });
    assert.match(deep, /Answer: \*\*42\*\* \(posterior 90\.0%.*\) · ⚠ out of the model's depth: the answer is a guess$/);
    const none = formatResult({ ...base, answer: null, probability: 0, confidence: { kind: "none", summary: "" } });
    assert.equal(none, `> ${RESULT_MARKER} Answer: no answer (16 particles, step-level twisted SMC)`);
    const hostile = formatResult({ ...base, answer: "4*2](javascript:x)\n# h", probability: 0.9, confidence: clear });
    assert.ok(!hostile.includes("\n") && hostile.includes("4\\*2\\]\\(javascript:x\\) \\# h"), hostile);
  });

  it("inserts right after the problem, and replaces an earlier result instead of stacking", () => {
    const p = problemAt(DOC, offsetOf(2))!;
    const plan = planResultInsertion(DOC, p, result)!;
    const once = DOC.slice(0, plan.start) + plan.text + DOC.slice(plan.end);
    assert.ok(once.includes(`How many pens does Ava have now?\n\n${result}\n\n- Ben`));
    const again = planResultInsertion(once, problemAt(once, offsetOf(2))!, result.replace("42", "43"))!;
    const twice = once.slice(0, again.start) + again.text + once.slice(again.end);
    assert.equal(twice.split(RESULT_MARKER).length, 2, "one result block");
    assert.ok(twice.includes("**43**"));
    // The result block is not taken for a problem itself.
    assert.equal(allProblems(twice).length, 5);
  });

  it("still finds the problem after edits above it, and says when it is gone", () => {
    const p = problemAt(DOC, offsetOf(14))!;
    const edited = "New intro paragraph with 3 words.\n\n" + DOC;
    const plan = planResultInsertion(edited, p, result)!;
    assert.equal(edited.slice(plan.start - 10, plan.start), "many eggs?");
    assert.equal(planResultInsertion(DOC.replace("5 boxes", "6 boxes"), p, result), undefined);
  });
});

describe("a 1 MB Markdown file", () => {
  it("is scanned for problems in linear time (the CodeLens runs this on every change)", function () {
    this.timeout(20000);
    const para = "Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?\n\n";
    const doc = para.repeat(Math.ceil(1_000_000 / para.length));
    const t0 = performance.now();
    const found = allProblems(doc);
    const ms = performance.now() - t0;
    assert.equal(found.length, Math.ceil(1_000_000 / para.length));
    // Quadratic scanning took 7.5 s for a third of this; linear takes well under a second.
    assert.ok(ms < 5000, `${ms.toFixed(0)} ms`);
    const last = found[found.length - 1];
    assert.deepEqual(problemAt(doc, last.start + 3), last);
  });
});
