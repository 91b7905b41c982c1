import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { extractAnswer, goldAnswer, parseNumber, reward } from "../../src/engine/math/answer";

/** Deterministic pseudo-random numbers (mulberry32), so a failing mix can be replayed. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomMix(length: number, alphabet: string, seed: number): string {
  const next = seeded(seed);
  let s = "";
  while (s.length < length) s += alphabet[Math.floor(next() * alphabet.length)];
  return s;
}

/** `unit` repeated to exactly `length` characters. */
const repeat = (unit: string) => (length: number) => unit.repeat(Math.ceil(length / unit.length)).slice(0, length);

describe("answer extraction runs in linear time on adversarial text", () => {
  const inputs: [string, (length: number) => string][] = [
    ["pure spaces", repeat(" ")],
    ["newlines", repeat("\n")],
    ["tabs and newlines", repeat("\t\n")],
    ['"1 " repeated', repeat("1 ")],
    ["a digit then spaces", (n) => "1" + " ".repeat(n - 1)],
    ["spaces then a digit", (n) => " ".repeat(n - 1) + "1"],
    ['"$ " repeated', repeat("$ ")],
    ['"- " repeated', repeat("- ")],
    ['"-$ " repeated', repeat("-$ ")],
    ['"1," repeated', repeat("1,")],
    ['"1/" repeated', repeat("1/")],
    ['"1 / " repeated', repeat("1 / ")],
    ['"1." repeated', repeat("1.")],
    ['"1e" repeated', repeat("1e")],
    ["long digit run", repeat("7")],
    ['"\\boxed{" repeated', repeat("\\boxed{")],
    ['"\\boxed{" then spaces', (n) => "\\boxed{" + " ".repeat(n - 7)],
    ['"\\boxed{{1}" repeated', repeat("\\boxed{{1}")],
    ['"\\frac{" inside \\boxed', (n) => "\\boxed{" + repeat("\\frac {")(n - 8) + "}"],
    ['"answer" then spaces', (n) => " answer" + " ".repeat(n - 7)],
    ['" a " repeated', repeat(" a ")],
    ['"answer: " repeated', repeat("answer: ")],
    ['"answer:" lines', repeat("answer:\n")],
    ['"the answer is " repeated', repeat("the answer is ")],
    ['"the answer is" then spaces', (n) => "the answer is" + " ".repeat(n - 13)],
    ['"\\boxed" then spaces', (n) => "\\boxed" + " ".repeat(n - 6)],
    ['"####" then spaces', (n) => "####" + " ".repeat(n - 4)],
    ['"####" repeated', repeat("####")],
    ['"<<" repeated', repeat("<<")],
    ['"<<1>" repeated', repeat("<<1>")],
    ["random spaces and digits", (n) => randomMix(n, " 1", 1)],
    ["random number characters", (n) => randomMix(n, " \t\n0123456789$-,./eE+", 2)],
    ["random markers", (n) => randomMix(n, " 1$-,/.<>{}#:\n", 3)],
  ];

  // Each input grows 1,000 → 10,000 → 100,000 characters: a cubic regression fails on the small size and a
  // quadratic one on the middle size, in seconds, before the big size could hang the run (a regex cannot be interrupted).
  for (const [name, make] of inputs) {
    it(`handles ${name}`, () => {
      for (const length of [1_000, 10_000, 100_000]) {
        const text = make(length);
        assert.equal(text.length, length);
        const start = performance.now();
        extractAnswer(text);
        reward(text, 1);
        parseNumber(text);
        goldAnswer(text);
        const ms = performance.now() - start;
        assert.ok(ms < 100, `${length} characters took ${ms.toFixed(0)} ms`);
      }
    });
  }
});
