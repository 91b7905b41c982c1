import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { answerKey, extractAnswer, goldAnswer, parseNumber, reward } from "../../src/engine/math/answer";
import { loadProblemsJsonl } from "../../src/engine/math/dataset";
import { GSM8K_DIR } from "./dataset.test";

describe("answer extraction", () => {
  const cases: [string, string, string][] = [
    ["3 * 4 = 12\n#### 12", "12", "####"],
    ["So she pays $1,250.50 in total.\n#### $1,250.50", "1250.5", "####"],
    ["The answer is 42.", "42", "the answer is"],
    ["the final answer is: -7 degrees", "-7", "the answer is"],
    ["Answer: 3/4", "0.75", "answer:"],
    ["Q: how many?\nA: 19 apples", "19", "answer:"],
    ["We get \\boxed{\\frac{1}{2}}", "0.5", "boxed"],
    ["so \\boxed{1,000} cookies", "1000", "boxed"],
    ["First 2 + 3 = 5, then 5 * 2 = 10 apples", "10", "last number"],
    ["Total: .5 of a pie", "0.5", "last number"],
    ["It costs $ 15", "15", "last number"],
    ["16 - 3 - 4 = <<16-3-4=9>>9 eggs\n#### 9", "9", "####"],
  ];
  for (const [text, key, form] of cases) {
    it(`reads ${JSON.stringify(text)} as ${key}`, () => {
      const got = extractAnswer(text);
      assert.equal(got?.key, key);
      assert.equal(got?.form, form);
    });
  }

  it("returns undefined when there is no number, and never throws on junk", () => {
    assert.equal(extractAnswer("no idea"), undefined);
    assert.equal(extractAnswer("#### \\boxed{ Answer: }"), undefined);
    for (const junk of ["", "####", "\\boxed{", "1/0", "}}}{{{", "-", "$", ",,,", "\u0000\uffff"]) extractAnswer(junk);
  });

  it("parses numbers and keys them canonically", () => {
    assert.equal(parseNumber("-$3,000"), -3000);
    assert.equal(parseNumber("1/0"), undefined);
    assert.equal(answerKey(2.0), "2");
    assert.equal(answerKey(-0), "0");
    assert.equal(answerKey(1 / 3), "0.333333");
  });

  it("reads scientific notation, but not the e of a word after a number", () => {
    assert.equal(parseNumber("1e5"), 100000);
    assert.equal(parseNumber("2.5e-3"), 0.0025);
    assert.equal(parseNumber("1E+3"), 1000);
    assert.equal(parseNumber("-$1.5e2"), -150);
    assert.equal(goldAnswer("#### 1e5"), 100000);
    assert.equal(extractAnswer("The answer is 1e5.")?.key, "100000");
    assert.equal(extractAnswer("so about 2.5e-3 of it")?.key, "0.0025");
    assert.equal(reward("#### 1e5", 100000), 1);
    assert.equal(parseNumber("3 eggs"), 3);
    assert.equal(parseNumber("3e"), 3);
    assert.equal(parseNumber("4e-"), 4);
    assert.equal(parseNumber("5E+x"), 5);
    assert.equal(extractAnswer("She has 3 eggs")?.key, "3");
    assert.equal(extractAnswer("#### 12 eggs")?.key, "12");
  });

  it("keeps the forms with a little space between sign, currency and digits", () => {
    assert.equal(parseNumber("- $ 15"), -15);
    assert.equal(parseNumber("-\t5"), -5);
    assert.equal(parseNumber("3 / 4"), 0.75);
    assert.equal(parseNumber(".5"), 0.5);
    assert.equal(parseNumber("1,250.5"), 1250.5);
    assert.equal(extractAnswer("x <<2*3=6>>6 and <<a>b>> 7")?.key, "7");
  });

  it("rewards numeric agreement only", () => {
    assert.equal(reward("#### 12.0", 12), 1);
    assert.equal(reward("The answer is 1,200", 1200), 1);
    assert.equal(reward("#### 13", 12), 0);
    assert.equal(reward("nothing", 12), 0);
  });

  (existsSync(GSM8K_DIR) ? it : it.skip)("returns every GSM8K reference solution's own #### answer", () => {
    let n = 0;
    for (const file of ["train.jsonl", "test.jsonl"]) {
      for (const p of loadProblemsJsonl(join(GSM8K_DIR, file)).problems) {
        const got = extractAnswer(p.solution!);
        assert.equal(got?.value, goldAnswer(p.solution!), p.source);
        assert.equal(got?.value, p.gold, p.source);
        n++;
      }
    }
    assert.equal(n, 8792);
  });
});
