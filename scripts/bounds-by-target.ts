/**
 * Where the log Ẑ bounds of `eval` lose (docs/token-twist.md, "Eleventh step"): for each level's shipped
 * twist, on the first problems of the synthetic test split, R replicates of SMC (lower bound) and of
 * conditional SMC seeded with an exact target sample (upper bound), against two final potentials:
 * - "right answer": eval's, 1[the final answer is right];
 * - "right answer, every line right": also every arithmetic line holds (this diagnostic knows arithmetic;
 *   the twists do not): the target a line verifier's ψ = Π φ describes.
 * Per target and level it prints the mean bounds over the problems where no run of either level found
 * Ẑ = 0, and how far each lies from a pooled estimate of log Z (log of the mean Ẑ of every lower-bound run
 * of both levels: each run's Ẑ is unbiased). It first prints what the model's plain samples get wrong:
 * an arithmetic slip, an operand that is neither in the problem nor an earlier result, or neither.
 * The twists are read for a known answer, as `eval`'s bounds read them: their known-answer floor
 * ("Fourteenth step"), each problem's answer ("Sixteenth step", knownAnswer.ts; it reads the answer of
 * eval's target for both targets) and, at token level, results being written read at their line's end
 * except against the answer's digits ("Seventeenth step"); `--no-answer` reads them without the answer,
 * `--no-floor` without the floor or the answer, as the eleventh step measured.
 * Run: npx tsx scripts/bounds-by-target.ts [--n 100] [--replicates 6] [--particles 16] [--threads 2] [--no-answer] [--no-floor]
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { evalSmcOptions } from "../src/engine/eval/evaluate";
import { generate } from "../src/engine/lm/generate";
import { encodeWithinContext } from "../src/engine/lm/model/contextWindow";
import { loadModel } from "../src/engine/lm/model/loadModel";
import { reward } from "../src/engine/math/answer";
import { applyOp, synthesize } from "../src/engine/math/problems";
import { runTwistedSmc, SmcLevel } from "../src/engine/smc/twistedSmc";
import { logMeanExp } from "../src/engine/smc/weights";
import { arithmeticLines } from "../src/engine/twist/arithmeticLines";
import { loadDigitTwist, loadTwistOrVerifier } from "../src/engine/twist/digitTwistFile";
import { knownAnswerTwist } from "../src/engine/twist/finalPotential";
import type { StepTwist, TokenTwist } from "../src/engine/smc/twist";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "100" },
    replicates: { type: "string", default: "6" },
    particles: { type: "string", default: "16" },
    threads: { type: "string", default: "2" },
    "no-floor": { type: "boolean", default: false },
    "no-answer": { type: "boolean", default: false },
  },
});
const N = Number(values.n),
  R = Number(values.replicates),
  K = Number(values.particles);
const MODEL = join(__dirname, "..", "models", "tiny-math-llama");

const linesHold = (text: string) => arithmeticLines(text).every((l) => applyOp(Number(l.a), l.op, Number(l.b)) === Number(l.c));

/** What a sample got wrong, first: "slip" (a line that does not hold), "operand" (a number from nowhere), or "clean". */
function firstFault(text: string, question: string): "slip" | "operand" | "clean" {
  const known = new Set((question.match(/\d+/g) ?? []).map(Number));
  for (const l of arithmeticLines(text)) {
    const [a, b, c] = [Number(l.a), Number(l.b), Number(l.c)];
    if (!known.has(a) || !known.has(b)) return "operand";
    if (applyOp(a, l.op, b) !== c) return "slip";
    known.add(c);
  }
  return "clean";
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

const meanStderr = (xs: number[]) => {
  const m = mean(xs);
  return { mean: m, stderr: Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1) / xs.length) };
};
const signed = (x: number) => `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(3)}`;

interface Runs {
  lower: number[];
  upper: number[];
}

async function main() {
  const model = await loadModel(MODEL, { threads: Number(values.threads) });
  const { tokenizer, lm } = model;
  const floored = (twist: TokenTwist | StepTwist) => (values["no-floor"] ? twist : knownAnswerTwist(twist));
  const levels: { level: SmcLevel; twist: TokenTwist | StepTwist }[] = [
    { level: "token", twist: floored(loadDigitTwist(join(MODEL, "twist-token.json"), lm.vocabSize, model.folder)!) },
    { level: "step", twist: floored(loadTwistOrVerifier(join(MODEL, "twist-step.json"), model.folder).head as StepTwist) },
  ];
  const reading = (twist: TokenTwist | StepTwist, answer: number) =>
    values["no-floor"] || values["no-answer"] ? twist : knownAnswerTwist(twist, answer);
  const targets = [
    { name: "right answer", holds: (text: string, gold: number) => reward(text, gold) === 1 },
    { name: "right answer, every line right", holds: (text: string, gold: number) => reward(text, gold) === 1 && linesHold(text) },
  ];
  const faults = new Map<string, number>();
  // Per target, per problem with an exact sample: each level's runs.
  const results = targets.map(() => [] as Runs[][]);
  const problems = synthesize("test", N, 0);
  for (const [i, p] of problems.entries()) {
    const { prompt, maxTokens } = encodeWithinContext(model, p.question, 96);
    const samples = await generate(lm, prompt, { numSamples: K, maxTokens, temperature: 1, seed: i, isEos: (t) => tokenizer.isEos(t) });
    const texts = samples.sequences.map((s) => tokenizer.decode(s.tokens));
    for (const t of texts) {
      const key = `${reward(t, p.final) === 1 ? "right" : "wrong"}, ${firstFault(t, p.question)}`;
      faults.set(key, (faults.get(key) ?? 0) + 1);
    }
    for (const [ti, target] of targets.entries()) {
      const exact = samples.sequences.find((_, j) => target.holds(texts[j], p.final));
      if (!exact) continue;
      const logPhi = (text: string) => (target.holds(text, p.final) ? 0 : -Infinity);
      const perLevel: Runs[] = [];
      for (const { level, twist } of levels) {
        const runs: Runs = { lower: [], upper: [] };
        for (let r = 0; r < R; r++) {
          const o = {
            ...evalSmcOptions(K, level, maxTokens, 1000 * r + i + 7, tokenizer),
            twist: reading(twist, p.final),
            logFinalPotential: logPhi,
          };
          runs.lower.push((await runTwistedSmc(lm, prompt, o)).logZ);
          runs.upper.push((await runTwistedSmc(lm, prompt, { ...o, seed: 1000 * r + i + 9, clamp: exact.tokens })).logZ);
        }
        perLevel.push(runs);
      }
      results[ti].push(perLevel);
    }
    process.stderr.write(`\r${i + 1}/${N} problems`);
  }
  process.stderr.write("\n");
  console.log(`Plain samples (${K} of each of ${N} problems), by outcome and first fault:`);
  for (const [key, count] of [...faults].sort()) console.log(`  ${key}: ${count}`);
  for (const [ti, target] of targets.entries()) {
    const shared = results[ti].filter((levelRuns) => levelRuns.every((r) => r.lower.every(Number.isFinite)));
    console.log(
      `\nTarget "${target.name}": ${results[ti].length} problems with an exact sample, ${shared.length} where no run found Ẑ = 0`,
    );
    const pooled = shared.map((levelRuns) => logMeanExp(levelRuns.flatMap((r) => r.lower)));
    levels.forEach(({ level }, l) => {
      const lower = mean(shared.map((runs) => mean(runs[l].lower)));
      const upper = mean(shared.map((runs) => mean(runs[l].upper)));
      const zeros = results[ti].filter((runs) => !runs[l].lower.every(Number.isFinite)).length;
      console.log(
        `  ${level}: lower ${lower.toFixed(3)}, upper ${upper.toFixed(3)} (gap ${(upper - lower).toFixed(3)}); pooled estimate ${mean(pooled).toFixed(3)}: ` +
          `lower ${(mean(pooled) - lower).toFixed(3)} below it, upper ${(upper - mean(pooled)).toFixed(3)} above; problems with a Ẑ = 0 run: ${zeros}`,
      );
    });
    const difference = (part: keyof Runs) => meanStderr(shared.map((runs) => mean(runs[0][part]) - mean(runs[1][part])));
    const [lower, upper] = [difference("lower"), difference("upper")];
    console.log(
      `  token minus step, per problem: lower ${signed(lower.mean)} ± ${lower.stderr.toFixed(3)}, upper ${signed(upper.mean)} ± ${upper.stderr.toFixed(3)}`,
    );
  }
  await lm.dispose();
}

main().catch((e) => {
  console.error(`bounds-by-target: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
