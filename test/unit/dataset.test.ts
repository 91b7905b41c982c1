import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { loadProblemsJsonl, parseProblemsJsonl } from "../../src/engine/math/dataset";
import { synthesize } from "../../src/engine/math/problems";

export const GSM8K_DIR = join(__dirname, "../../../shared/datasets/gsm8k");

describe("problem loader", () => {
  it("reads the generator's JSONL with the same answers", () => {
    const ps = synthesize("test", 50, 3);
    const text = ps.map((p) => JSON.stringify({ question: p.question, answer: p.answer })).join("\n") + "\n";
    const { problems, issues } = parseProblemsJsonl(text, "synth.jsonl");
    assert.deepEqual(issues, []);
    assert.deepEqual(
      problems.map((p) => p.gold),
      ps.map((p) => p.final),
    );
    assert.equal(problems[4].source, "synth.jsonl:5");
  });

  it("reports malformed lines with file and line, and keeps the good ones", () => {
    const text = [
      '{"question": "Q1?", "answer": "1 + 1 = 2\\n#### 2"}',
      "{not json",
      '{"question": "Q3?"}',
      '["a list"]',
      '{"question": "Q5?", "answer": "no marker here"}',
      '{"question": "Q6?", "answer": 7}',
    ].join("\n");
    const { problems, issues } = parseProblemsJsonl(text, "bad.jsonl");
    assert.deepEqual(
      problems.map((p) => [p.question, p.gold]),
      [
        ["Q1?", 2],
        ["Q6?", 7],
      ],
    );
    assert.deepEqual(
      issues.map((i) => i.source),
      ["bad.jsonl:2", "bad.jsonl:3", "bad.jsonl:4", "bad.jsonl:5"],
    );
    assert.match(issues[1].message, /"answer"/);
  });

  it("uses custom field names", () => {
    const { problems } = parseProblemsJsonl('{"problem": "P?", "solution": "#### 1,250"}', "x", {
      question: "problem",
      answer: "solution",
    });
    assert.equal(problems[0].gold, 1250);
  });

  it("names the file it cannot read", () => {
    assert.throws(() => loadProblemsJsonl("/nonexistent/file.jsonl"), /cannot read problem file \/nonexistent\/file\.jsonl: ENOENT/);
  });

  (existsSync(GSM8K_DIR) ? it : it.skip)("loads all of real GSM8K without an issue", () => {
    for (const [file, n] of [
      ["train.jsonl", 7473],
      ["test.jsonl", 1319],
    ] as const) {
      const { problems, issues } = loadProblemsJsonl(join(GSM8K_DIR, file));
      assert.deepEqual(issues, []);
      assert.equal(problems.length, n);
    }
  });
});
