/**
 * The twist that reads a known answer (src/engine/twist/knownAnswer.ts), on the shipped model and its
 * shipped twists: what it is worth where a result equal to the answer is written, that both levels read
 * every finished line alike, and that at token level it steers the line that gives the answer toward the
 * answer's digits and leaves the other lines as they were. (Its exactness on the enumerable toy model is
 * in digitTwist.test.ts.)
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { generate } from "../../src/engine/lm/generate";
import { synthesize } from "../../src/engine/math/problems";
import { arithmeticLines } from "../../src/engine/twist/arithmeticLines";
import { DigitTwist } from "../../src/engine/twist/digitTwist";
import { loadDigitTwist, loadTwistOrVerifier } from "../../src/engine/twist/digitTwistFile";
import { knownAnswerTwist } from "../../src/engine/twist/finalPotential";
import { logSigmoid } from "../../src/engine/twist/heads";
import { answerDigits, KnownAnswerDigitTwist, KnownAnswerLineTwist } from "../../src/engine/twist/knownAnswer";
import { LineVerifier } from "../../src/engine/twist/lineVerifier";
import type { TokenTwist } from "../../src/engine/smc/twist";
import { MODEL_DIR, shippedModel } from "./helpers";

describe("the twist that reads a known answer", function () {
  this.timeout(300000);

  const load = async () => {
    const model = await shippedModel();
    const V = model.lm.vocabSize;
    const digit = loadDigitTwist(join(MODEL_DIR, "twist-token.json"), V, model.folder)!;
    const verifier = loadTwistOrVerifier(join(MODEL_DIR, "twist-step.json"), model.folder).head as LineVerifier;
    return { model, V, digit, verifier, decode: (x: readonly number[]) => model.tokenizer.decode(x) };
  };

  it("is the floored twist alone where the answer cannot be written as a result, and reads it otherwise", async () => {
    const { digit, verifier } = await load();
    for (const answer of [2.5, -3, 1e300, Number.NaN]) {
      assert.equal(answerDigits(answer), undefined, String(answer));
      assert.ok(knownAnswerTwist(digit, answer) instanceof DigitTwist);
      assert.ok(knownAnswerTwist(verifier, answer) instanceof LineVerifier);
    }
    assert.equal(answerDigits(1250), "1250");
    assert.equal(answerDigits(0), "0");
    assert.ok(knownAnswerTwist(digit, 592) instanceof KnownAnswerDigitTwist);
    assert.ok(knownAnswerTwist(verifier, 592) instanceof KnownAnswerLineTwist);
    // A floored twist is floored once: eval floors each level's twist once and adds each problem's answer.
    const floored = knownAnswerTwist(digit);
    assert.equal(knownAnswerTwist(floored), floored);
    assert.equal((knownAnswerTwist(floored, 592) as KnownAnswerDigitTwist).base, floored);
  });

  it("ψ = 1 once a result equal to the answer is written; before that each closed line that did not give it costs 1 − v", async () => {
    const { verifier } = await load();
    const floored = verifier.forKnownAnswer();
    const twist = knownAnswerTwist(verifier, 592) as KnownAnswerLineTwist;
    // Problem 97 of the test split's kind: two slips that the model undoes, then the answer.
    const lines = "409 - 144 = 275\n275 - 117 = 148\n";
    assert.equal(twist.logValueOfText(`${lines}148 * 4 = 592\n`), 0);
    assert.equal(twist.logValueOfText(`${lines}148 * 4 = 592\n#### 592`), 0);
    // v = σ(ℓ(x op y = 592)) of each closed line's expression, by the verifier.
    const logNotV = (a: string, op: "-" | "*", b: string) => logSigmoid(-verifier.lineLogit(verifier.encodeLine({ a, op, b, c: "592" })!));
    const expected = floored.logValueOfText(lines) + logNotV("409", "-", "144") + logNotV("275", "-", "117");
    assert.ok(Math.abs(twist.logValueOfText(lines) - expected) < 1e-9);
    // Writing 582 where the verifier believes 148 × 4 gives the answer: the solution is nearly lost.
    const slipped = twist.logValueOfText(`${lines}148 * 4 = 582\n`);
    assert.ok(slipped < floored.logValueOfText(`${lines}148 * 4 = 582\n`) - 2, `ψ ${Math.exp(slipped)}`);
    assert.ok(logNotV("148", "*", "4") < -2, "the verifier believes 148 × 4 = 592");
  });

  it("both levels read every finished line alike, on the shipped model's own samples", async () => {
    const { model, digit, verifier, decode } = await load();
    const newline = model.tokenizer.encode("\n")[0];
    let ends = 0,
      reached = 0;
    for (const [i, p] of synthesize("test", 12, 3).entries()) {
      const token = knownAnswerTwist(knownAnswerTwist(digit), p.final) as KnownAnswerDigitTwist;
      const step = knownAnswerTwist(verifier, p.final) as KnownAnswerLineTwist;
      const prompt = model.tokenizer.encodeProblem(p.question);
      const samples = await generate(model.lm, prompt, {
        numSamples: 4,
        maxTokens: 96,
        temperature: 1,
        seed: i,
        isEos: (t) => model.tokenizer.isEos(t),
      });
      for (const { tokens } of samples.sequences)
        tokens.forEach((t, j) => {
          if (t !== newline) return;
          const row = token.logPsiNext({ hiddenSize: 0, prefixes: [tokens.slice(0, j)], decode });
          const text = decode(tokens.slice(0, j + 1));
          assert.ok(Math.abs(row[newline] - step.logValueOfText(text)) < 1e-4, `${text}: ${row[newline]} vs ${step.logValueOfText(text)}`);
          ends++;
          if (row[newline] === 0 && arithmeticLines(text).length) reached++;
        });
    }
    assert.ok(ends >= 100 && reached >= 10, `${ends} line ends, ${reached} after the answer was reached`);
  });

  it("at token level steers the line that gives the answer toward the answer's digits, and no other line", async () => {
    const { model, digit, decode } = await load();
    const floored = knownAnswerTwist(digit);
    const pieces = Array.from({ length: model.lm.vocabSize }, (_, s) => decode([s]));
    // The ψ of each digit 0–9 written first after "= " (as " d" after "=", or "d" after "= ").
    const firstDigitScores = (twist: TokenTwist, before: string) => {
      const row = twist.logPsiNext({ hiddenSize: 0, prefixes: [model.tokenizer.encode(before)], decode }) as Float32Array;
      return Array.from({ length: 10 }, (_, d) => Math.max(...pieces.flatMap((p, s) => (p.trim() === String(d) ? [row[s]] : []))));
    };
    const first = (scores: number[], d: number) => scores.every((x, e) => e === d || x < scores[d]);
    const counts = { last: 0, lastFirst: 0, lastFirstVote: 0, other: 0, otherFlat: 0, otherFlatUnread: 0 };
    for (const p of synthesize("test", 60, 4)) {
      const reading = knownAnswerTwist(floored, p.final);
      const leading = Number(String(p.final)[0]);
      const solution = p.answer.split("\n").filter((l) => l.includes("="));
      solution.forEach((line, k) => {
        const before = `${solution.slice(0, k).join("\n")}${k ? "\n" : ""}${line.slice(0, line.indexOf("=") + 1)}`;
        const right = Number(line.slice(line.indexOf("=") + 1).trim()[0]);
        const scores = firstDigitScores(reading, before);
        if (k === solution.length - 1) {
          counts.last++;
          if (first(scores, right)) counts.lastFirst++;
          if (first(firstDigitScores(digit, before), right)) counts.lastFirstVote++;
        } else {
          // Every digit but the answer's leading one is worth the same: the line is read at its end.
          counts.other++;
          const others = scores.filter((_, d) => d !== leading);
          if (Math.max(...others) - Math.min(...others) < 1e-5) counts.otherFlat++;
          const unread = firstDigitScores(floored, before);
          if (Math.max(...unread) - Math.min(...unread) < 1e-5) counts.otherFlatUnread++;
        }
      });
    }
    // Measured: the answer's leading digit first on 97% of the last lines reading the answer; 83% by the
    // twist that votes (the answer unknown, results read open).
    const lastRate = counts.lastFirst / counts.last;
    const voteRate = counts.lastFirstVote / counts.last;
    assert.ok(lastRate >= 0.95 && lastRate > voteRate + 0.05, `last lines: ${voteRate} voting → ${lastRate} reading the answer`);
    assert.ok(counts.other >= 60 && counts.otherFlat === counts.other && counts.otherFlatUnread === counts.other, JSON.stringify(counts));
  });
});
