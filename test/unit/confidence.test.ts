import assert from "node:assert/strict";
import { describeConfidence } from "../../src/engine/smc/confidence";
import { modelDomain, outOfDepth } from "../../src/engine/lm/model/modelDomain";
import { defaultModelDir } from "../../src/engine/lm/model/modelFolder";
import { synthesize } from "../../src/engine/math/problems";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gsm8kIfPresent } from "./helpers";

const a = (answer: string, probability: number, particles = 1) => ({ answer, probability, particles });

describe("how sure a run is, in words", () => {
  it("says a tie is a tie, naming every tied answer", () => {
    const c = describeConfidence([a("806", 0.25, 4), a("886", 0.25, 4), a("786", 0.25, 4), a("12", 0.125, 2)]);
    assert.equal(c.kind, "tie");
    assert.deepEqual(c.tied, ["806", "886", "786"]);
    assert.equal(c.summary, "806, 886 or 786 — tied at 25.0% each");
  });

  it("marks a low posterior as uncertain, with the runner-up", () => {
    const c = describeConfidence([a("42", 0.31), a("41", 0.29), a("7", 0.2)]);
    assert.equal(c.kind, "uncertain");
    assert.equal(c.summary, "42 — uncertain: posterior 31.0%, next 41 at 29.0%");
  });

  it("is clear at or above one half, and says when no particle answered", () => {
    assert.deepEqual(describeConfidence([a("42", 0.5), a("41", 0.5 - 1e-3)]), { kind: "clear", summary: "42 (posterior 50.0%)" });
    assert.equal(describeConfidence([]).kind, "none");
  });

  it("carries a problem's being out of the model's depth", () => {
    assert.equal(describeConfidence([a("42", 0.9)], "out of its depth").outOfDepth, "out of its depth");
  });
});

describe("the shipped model's domain", () => {
  const domain = modelDomain(defaultModelDir())!;

  it("holds every problem of its generator's test split", () => {
    assert.ok(domain, "models/tiny-math-llama/domain.json");
    const flagged = synthesize("test", 2000, 11).filter((p) => outOfDepth(domain, "tiny-math-llama", p.question));
    assert.equal(flagged.length, 0);
  });

  it("says a grade-school problem of another kind is out of its depth, naming words it never saw", () => {
    const problem =
      "A bakery sells muffins for $3 each and cookies for $1.50 each. On Saturday it sold 48 muffins and twice as many cookies. How much money did the bakery make on Saturday?";
    assert.match(
      outOfDepth(domain, "tiny-math-llama", problem) ?? "",
      /^tiny-math-llama is out of its depth here: it was trained on short synthetic word problems .*, and \d+ of this problem's \d+ words \("bakery", "sells", "muffins", …\) are new to it, so its answer is a guess/,
    );
  });

  const gsm8k = gsm8kIfPresent();
  (gsm8k ? it : it.skip)("says every GSM8K test problem is out of its depth", () => {
    const questions = readFileSync(join(gsm8k!, "test.jsonl"), "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l).question as string);
    const familiar = questions.filter((q) => !outOfDepth(domain, "tiny-math-llama", q));
    assert.equal(familiar.length, 0, `${familiar.length} of ${questions.length} GSM8K problems passed as familiar`);
  });
});
