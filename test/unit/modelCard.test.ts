import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { generate } from "../../src/engine/lm/generate";
import { extractAnswer } from "../../src/engine/math/answer";
import { synthesize } from "../../src/engine/math/problems";
import { arithmeticLines, encodeLine } from "../../src/engine/twist/arithmeticLines";
import { LineVerifier } from "../../src/engine/twist/lineVerifier";
import { loadTwist } from "../../src/engine/twist/twistFile";
import { MODEL_DIR, shippedModel } from "./helpers";

const measured = JSON.parse(readFileSync(join(MODEL_DIR, "measurements.json"), "utf8"));
const card = readFileSync(join(MODEL_DIR, "README.md"), "utf8");

describe("the shipped model and its model card", () => {
  it("gives the greedy solutions the measurements record on fixed test problems", async () => {
    const { lm, tokenizer } = await shippedModel();
    const problems = synthesize("test", measured.examples.length, measured.testProblems.seed);
    for (const [i, ex] of measured.examples.entries()) {
      assert.equal(problems[i].question, ex.question);
      const r = await generate(lm, tokenizer.encodeProblem(ex.question), {
        numSamples: 1,
        maxTokens: 96,
        temperature: 0,
        seed: 0,
        isEos: (t) => tokenizer.isEos(t),
      });
      const text = tokenizer.decode(r.sequences[0].tokens);
      assert.equal(text, ex.greedy);
      assert.equal(extractAnswer(text)?.key ?? null, ex.greedyAnswer);
    }
  });

  it("is imperfect on purpose, and the card quotes the measured numbers", () => {
    assert.ok(measured.singleSampleT1.accuracy >= 0.25 && measured.singleSampleT1.accuracy <= 0.75);
    for (const key of ["greedy", "singleSampleT1", "majorityAt16", "passAt16"]) {
      assert.ok(card.includes(`${(100 * measured[key].accuracy).toFixed(1)}%`), `the card quotes ${key}`);
    }
  });

  it("ships a line verifier for this model that tells right lines from slipped ones", async () => {
    const model = await shippedModel();
    const { head } = loadTwist(join(MODEL_DIR, "twist-step.json"), model.folder);
    assert.ok(head instanceof LineVerifier);
    // Lines the model writes on held-out problems, judged here (only here) by their arithmetic.
    const scored: { logit: number; right: boolean }[] = [];
    for (const [i, p] of synthesize("test", 40, 123).entries()) {
      const r = await generate(model.lm, model.tokenizer.encodeProblem(p.question), {
        numSamples: 16,
        maxTokens: 96,
        temperature: 1,
        seed: i,
        isEos: (t) => model.tokenizer.isEos(t),
      });
      for (const s of r.sequences) {
        for (const l of arithmeticLines(model.tokenizer.decode(s.tokens))) {
          const [a, b, c] = [Number(l.a), Number(l.b), Number(l.c)];
          const value = { "+": a + b, "-": a - b, "*": a * b, "/": a / b }[l.op];
          scored.push({ logit: head.lineLogit(encodeLine(l, head.p.columns)), right: value === c });
        }
      }
    }
    // AUC: how often a right line scores above a wrong one.
    const right = scored.filter((x) => x.right).map((x) => x.logit),
      wrong = scored.filter((x) => !x.right).map((x) => x.logit);
    assert.ok(wrong.length >= 50, `enough slipped lines to judge (${wrong.length})`);
    let above = 0;
    for (const r of right) for (const w of wrong) above += r > w ? 1 : r === w ? 0.5 : 0;
    const auc = above / (right.length * wrong.length);
    assert.ok(auc > 0.85, `line AUC ${auc.toFixed(3)}`);
  });

  it("the card quotes the twist evaluation, and the twist beats majority voting by 5 points", () => {
    const report = JSON.parse(readFileSync(join(MODEL_DIR, "twist-eval.json"), "utf8"));
    const acc = (prefix: string) => report.rows.find((r: { method: string }) => r.method.startsWith(prefix)).accuracy as number;
    const best = Math.max(acc("twisted SMC, step level"), acc("weighted vote over step-level"));
    assert.ok(best >= acc("majority vote@") + 0.05);
    assert.ok(acc("twisted SMC, step level") >= acc("SMC without twist"));
    for (const r of report.rows as { method: string; accuracy: number; seconds: number }[]) {
      if (r.seconds > 0 || r.method.startsWith("oracle"))
        assert.ok(card.includes(`${(100 * r.accuracy).toFixed(1)}%`), `the card quotes "${r.method}"`);
    }
  });
});
