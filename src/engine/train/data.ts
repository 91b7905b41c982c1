/** The problems a trainer or evaluation runs on: synthetic, GSM8K, or any GSM8K-format JSONL file. */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { loadProblemsJsonl, MathProblem } from "../math/dataset";
import { synthesize, Split } from "../math/problems";
import { gsm8kDirFromEnv } from "../environment";
import { InputError } from "../util/errors";

export class DatasetError extends InputError {}

/** GSM8K's folder: $TWISTED_SMC_GSM8K, else a shared/datasets/gsm8k found above the working folder or this file. */
export function gsm8kDir(): string {
  const given = gsm8kDirFromEnv();
  if (given) return given;
  for (const start of [process.cwd(), __dirname]) {
    for (let dir = start; ; dir = dirname(dir)) {
      for (const candidate of [join(dir, "shared/datasets/gsm8k"), join(dir, "../shared/datasets/gsm8k")]) {
        if (existsSync(join(candidate, "test.jsonl"))) return resolve(candidate);
      }
      if (dirname(dir) === dir) break;
    }
  }
  throw new DatasetError("GSM8K was not found: set TWISTED_SMC_GSM8K to the folder holding train.jsonl and test.jsonl");
}

export interface LoadedProblems {
  problems: MathProblem[];
  /** Lines skipped as malformed, with file and line. */
  skipped: string[];
  description: string;
}

/**
 * The first `n` problems of a data set's split. Synthetic problems are drawn with `seed`; files keep
 * their order. Malformed lines are skipped and reported.
 */
export function loadProblems(dataset: string, split: Split, n: number, seed: number): LoadedProblems {
  if (dataset === "synthetic") {
    const problems = synthesize(split, n, seed).map((p, i) => ({
      question: p.question,
      solution: p.answer,
      gold: p.final,
      source: `synthetic:${split}:${seed}:${i}`,
    }));
    return { problems, skipped: [], description: `synthetic ${split} (seed ${seed})` };
  }
  const file = dataset === "gsm8k" ? join(gsm8kDir(), `${split}.jsonl`) : resolve(dataset);
  if (!existsSync(file)) throw new DatasetError(`data file ${file} does not exist`);
  const { problems, issues } = loadProblemsJsonl(file);
  if (!problems.length)
    throw new DatasetError(
      `${file} holds no usable problem${issues.length ? ` (first issue: ${issues[0].source}: ${issues[0].message})` : ""}`,
    );
  return { problems: problems.slice(0, n), skipped: issues.map((i) => `${i.source}: ${i.message}`), description: file };
}
