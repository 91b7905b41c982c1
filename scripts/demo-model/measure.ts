/**
 * Step 3 of the demo-model recipe: measures the shipped model on held-out synthetic test problems
 * (greedy; K samples at temperature 1: single-sample accuracy, majority vote, pass@K) and writes
 * models/tiny-math-llama/measurements.json, which the model card quotes and the tests check.
 *
 *   npx tsx scripts/demo-model/measure.ts [--n 500] [--k 16] [--seed 0]
 */
import { join, resolve } from "node:path";
import { answersMatch, extractAnswer } from "../../src/engine/math/answer";
import { synthesize } from "../../src/engine/math/problems";
import { generate } from "../../src/engine/lm/generate";
import { loadModel } from "../../src/engine/lm/model/loadModel";
import { writeFileAtomic } from "../../src/engine/util/atomicWrite";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ""), process.argv[i + 1]);
const n = Number(args.get("n") ?? 500);
const k = Number(args.get("k") ?? 16);
const seed = Number(args.get("seed") ?? 0);
const modelDir = resolve(__dirname, "../../models/tiny-math-llama");

const proportion = (hits: number, total: number) => ({
  accuracy: Math.round((hits / total) * 10000) / 10000,
  stderr: Math.round(Math.sqrt(((hits / total) * (1 - hits / total)) / total) * 10000) / 10000,
});

async function main() {
  const { tokenizer, lm } = await loadModel(modelDir, { threads: 2 });
  const problems = synthesize("test", n, seed);
  let greedyHits = 0,
    sampleHits = 0,
    majorityHits = 0,
    passHits = 0,
    tokens = 0;
  const examples: { question: string; gold: number; greedy: string; greedyAnswer: string | null }[] = [];
  const byDepth = new Map<number, { n: number; greedy: number }>();
  const start = performance.now();
  for (const [i, p] of problems.entries()) {
    const prompt = tokenizer.encodeProblem(p.question);
    const isEos = (t: number) => tokenizer.isEos(t);
    const greedy = await generate(lm, prompt, { numSamples: 1, maxTokens: 96, temperature: 0, seed, isEos });
    const greedyText = tokenizer.decode(greedy.sequences[0].tokens);
    const greedyAnswer = extractAnswer(greedyText);
    const greedyOk = greedyAnswer !== undefined && answersMatch(greedyAnswer.value, p.final);
    greedyHits += +greedyOk;
    const depth = byDepth.get(p.steps.length) ?? { n: 0, greedy: 0 };
    depth.n++;
    depth.greedy += +greedyOk;
    byDepth.set(p.steps.length, depth);
    if (i < 5) examples.push({ question: p.question, gold: p.final, greedy: greedyText, greedyAnswer: greedyAnswer?.key ?? null });

    const sampled = await generate(lm, prompt, { numSamples: k, maxTokens: 96, temperature: 1, seed: seed * 100003 + i, isEos });
    tokens += sampled.generatedTokens;
    const answers = sampled.sequences.map((s) => extractAnswer(tokenizer.decode(s.tokens)));
    const correct = answers.map((a) => a !== undefined && answersMatch(a.value, p.final));
    sampleHits += correct.filter(Boolean).length;
    passHits += +correct.some(Boolean);
    const votes = new Map<string, number>();
    for (const a of answers) if (a) votes.set(a.key, (votes.get(a.key) ?? 0) + 1);
    // Ties go to the answer seen first, so the vote is deterministic.
    const top = [...votes].reduce<[string, number] | undefined>((best, cur) => (!best || cur[1] > best[1] ? cur : best), undefined);
    majorityHits += +(top !== undefined && answersMatch(Number(top[0]), p.final));
  }
  const seconds = (performance.now() - start) / 1000;
  const result = {
    measured: new Date().toISOString().slice(0, 10),
    command: `npx tsx scripts/demo-model/measure.ts --n ${n} --k ${k} --seed ${seed}`,
    testProblems: { split: "test", n, seed },
    greedy: proportion(greedyHits, n),
    singleSampleT1: proportion(sampleHits, n * k),
    [`majorityAt${k}`]: proportion(majorityHits, n),
    [`passAt${k}`]: proportion(passHits, n),
    greedyByNumberOfSteps: Object.fromEntries([...byDepth].sort((a, b) => a[0] - b[0]).map(([d, v]) => [d, proportion(v.greedy, v.n)])),
    sampledTokensPerSecond: Math.round(tokens / seconds),
    seconds: Math.round(seconds),
    examples,
  };
  writeFileAtomic(join(modelDir, "measurements.json"), JSON.stringify(result, null, 2) + "\n");
  console.log(JSON.stringify(result, null, 2));
  await lm.dispose();
}

main();
