/**
 * How well line verifiers judge every digit of a result, on right lines (docs/token-twist.md): for each
 * twist file given (a line verifier, or a digit-twist file's verifier), on GSM8K's reference lines and on
 * synthetic worked solutions, the share of the lines it scores right (σ(ℓ) > 0.5) and how often the right
 * digit of a result scores highest of the ten in its column, by operator.
 * Run: npx tsx scripts/verifier-digits.ts models/tiny-math-llama/twist-step.json [more files…]
 * The diagnostic keeps only lines whose arithmetic holds (it knows arithmetic; the verifiers do not).
 * GSM8K is found as the trainer finds it ($TWISTED_SMC_GSM8K, else shared/datasets/gsm8k above the checkout).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { synthesize } from "../src/engine/math/problems";
import { gsm8kDir } from "../src/engine/train/data";
import { ArithmeticLine, arithmeticLines, encodeLine } from "../src/engine/twist/arithmeticLines";
import { loadTwistOrVerifier } from "../src/engine/twist/digitTwistFile";
import { LineVerifier } from "../src/engine/twist/lineVerifier";

const COLUMNS = 4;

const holds = (l: ArithmeticLine) => {
  if (![l.a, l.b, l.c].every((n) => /^\d{1,4}$/.test(n))) return false;
  const [a, b, c] = [Number(l.a), Number(l.b), Number(l.c)];
  return { "+": a + b, "-": a - b, "*": a * b, "/": a / b }[l.op] === c;
};

function rightLines(solutions: string[]): ArithmeticLine[] {
  return solutions.flatMap((s) => arithmeticLines(s)).filter(holds);
}

function judge(v: LineVerifier, lines: ArithmeticLine[]): string {
  let scoredRight = 0;
  const first: Record<string, [number, number]> = {};
  for (const l of lines) {
    scoredRight += +(v.lineLogit(encodeLine(l, COLUMNS)) > 0);
    for (let i = 0; i < l.c.length; i++) {
      const score = (d: number) => v.lineLogit(encodeLine({ ...l, c: l.c.slice(0, i) + d + l.c.slice(i + 1) }, COLUMNS));
      const right = Number(l.c[i]);
      const s = Array.from({ length: 10 }, (_, d) => score(d));
      const ok = +s.every((x, d) => d === right || x < s[right]);
      for (const key of ["all", l.op]) {
        first[key] ??= [0, 0];
        first[key][0] += ok;
        first[key][1]++;
      }
    }
  }
  const pct = ([n, d]: [number, number]) => `${((100 * n) / d).toFixed(1)}%`;
  const ops = ["+", "-", "*", "/"].filter((op) => first[op]).map((op) => `${op} ${pct(first[op])}`);
  return `scored right ${pct([scoredRight, lines.length])} of ${lines.length} lines; right digit first ${pct(first.all)} of ${first.all[1]} (${ops.join(", ")})`;
}

const sets: [string, ArithmeticLine[]][] = [
  ["synthetic test (100 worked solutions, seed 5)", rightLines(synthesize("test", 100, 5).map((p) => p.answer))],
];
const gsm8k = join(gsm8kDir(), "test.jsonl");
if (existsSync(gsm8k)) {
  const answers = readFileSync(gsm8k, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l).answer as string);
  sets.push(["GSM8K test reference lines", rightLines(answers)]);
} else console.log(`(GSM8K not found at ${gsm8k}: synthetic only)`);

for (const path of process.argv.slice(2)) {
  const v = loadTwistOrVerifier(path).head;
  if (!(v instanceof LineVerifier)) throw new Error(`${path} holds no line verifier`);
  for (const [name, lines] of sets) console.log(`${path} · ${name}: ${judge(v, lines)}`);
}
