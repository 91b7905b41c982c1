/**
 * Learns the digit twist's result lengths (twist/resultLengths.ts) from the model's own samples: plain
 * samples of training problems, their lines labelled from the outcomes (lineLabels.ts), and the right
 * ones counted. No reference solution and no arithmetic: what is counted is what right samples wrote.
 */
import { LoadedModel } from "../lm/model/loadModel";
import { MathProblem } from "../math/dataset";
import { ResultLengthTable } from "../twist/resultLengths";
import { hashString64 } from "../util/rng";
import { mineLineLabels } from "./lineLabels";
import { plainSamples } from "./samples";
import type { StepTwist } from "../smc/twist";

/** Plain samples are drawn without a twist; the options name one all the same. */
const NO_TWIST: StepTwist = { kind: "step", textOnly: true, logValue: (input) => new Float64Array(input.prefixes.length) };

/**
 * The model's plain samples of the `i`-th problem (temperature 1, step level, no twist) and whether
 * each is right: what the digit twist's counts and heads are mined from. `purpose` keeps the seeds of
 * different minings apart.
 */
export function plainSamplesFor(
  model: LoadedModel,
  problem: MathProblem,
  i: number,
  o: { samples: number; maxTokens: number; seed: number },
  purpose: string,
): ReturnType<typeof plainSamples> {
  const seed = Number(hashString64(`${purpose}:${o.seed}:${i}`) % 2147483647n);
  return plainSamples(model, problem, { level: "step", samples: o.samples, maxTokens: o.maxTokens, seed, rewardFloor: 0, twist: NO_TWIST });
}

export interface ResultLengthOptions {
  /** Plain samples per problem. */
  samples: number;
  maxTokens: number;
  seed: number;
  onProblem?: (done: number, total: number) => void;
}

export async function learnResultLengths(
  model: LoadedModel,
  problems: readonly MathProblem[],
  o: ResultLengthOptions,
): Promise<{ table: ResultLengthTable; lines: number }> {
  const table = new ResultLengthTable();
  let lines = 0;
  for (const [i, problem] of problems.entries()) {
    const plain = await plainSamplesFor(model, problem, i, o, "lengths");
    for (const { line, label } of mineLineLabels(plain.texts, plain.correct))
      if (label === 1) {
        table.add(line);
        lines++;
      }
    o.onProblem?.(i + 1, problems.length);
  }
  return { table, lines };
}
