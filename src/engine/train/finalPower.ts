/**
 * The final power γ a finished verifier is written with (lineVerifier.ts, finalPower: when the answer is
 * unknown a solution ends on φ^γ), chosen for each run on its own held-out problems: twisted SMC at the
 * run's level ends on φ, each final population's posterior over answers is read again as if it had
 * ended on φ^γ (every particle's weight times φ^(γ − 1)), and γ is, of the candidates whose top answer's
 * posterior is best calibrated (the lowest Brier score of the top answer, or no worse than it beyond the
 * problems' noise), the one nearest φ as its outcomes fitted it (γ = 1).
 *
 * Why per run: how sharp φ should be read depends on the verifier. The shipped run's verifier is soft
 * (φ says how often a solution like this one is right, and this model reaches right answers through
 * lines that do not hold), and its posterior is best calibrated near γ = 2; the twist of a short run
 * ("quick": 400 problems, one pass) is overconfident already at γ = 1 — at 2 it says 0.77 where 67.5%
 * are right (docs/token-twist.md, "Fifteenth step"). A posterior must not claim more than it knows.
 */
import type { LoadedModel } from "../lm/model/loadModel";
import { encodeWithinContext } from "../lm/model/contextWindow";
import { evalSmcOptions } from "../eval/evaluate";
import { extractAnswer } from "../math/answer";
import type { MathProblem } from "../math/dataset";
import { answerPosterior } from "../smc/posterior";
import { runTwistedSmc, SmcLevel } from "../smc/twistedSmc";
import type { Twist } from "../smc/twist";
import type { LineVerifier } from "../twist/lineVerifier";
import { hashString64 } from "../util/rng";
import { isCorrect } from "./samples";

/** The powers a run chooses from: φ read softer (< 1), as it is (1), or sharper. */
export const FINAL_POWERS: readonly number[] = [0.5, 0.75, 1, 1.5, 2, 3];

/** The power written when no held-out problem was found to choose on: φ as its outcomes fitted it. */
export const UNCHOSEN_FINAL_POWER = 1;

/**
 * How the power is chosen: on up to `problems` of the held-out problems (the first of those the base
 * rates were set on), SMC with `particles` particles, as `eval` and `solve` run it by default.
 */
export const FINAL_POWER_FIT = { problems: 300, particles: 16 };

/** One SMC run's final population, ended on φ. */
export interface EndedPopulation {
  /** Each final particle's text. */
  texts: string[];
  /** Whether each particle's answer is the problem's. */
  right: boolean[];
  /** Each particle's final log weight (ended on φ). */
  logWeights: number[];
  /** Each particle's log φ. */
  logPhi: number[];
}

/**
 * The population's top answer — the weighted vote `solve` and `eval` show (answerPosterior) — and its
 * probability when it ends on φ^power; undefined if every weight is 0.
 */
export function topAnswer(population: EndedPopulation, power: number): { probability: number; right: boolean } | undefined {
  const logW = population.logWeights.map((w, i) => (w === -Infinity ? -Infinity : w + (power - 1) * population.logPhi[i]));
  if (logW.every((w) => w === -Infinity)) return undefined;
  const { posterior } = answerPosterior(population.texts, logW);
  const top = posterior[0];
  if (!top) return { probability: 0, right: false };
  const particle = population.texts.findIndex((t) => extractAnswer(t)?.key === top.answer);
  return { probability: top.probability, right: population.right[particle] };
}

/** Each population's (P(top answer) − 1[it is right])², ending on φ^power (0 where every weight died). */
export function topAnswerBriers(populations: readonly EndedPopulation[], power: number): number[] {
  return populations.map((population) => {
    const top = topAnswer(population, power);
    return top ? (top.probability - (top.right ? 1 : 0)) ** 2 : 0;
  });
}

/** Mean over the populations of (P(top answer) − 1[it is right])², ending on φ^power. */
export const topAnswerBrier = (populations: readonly EndedPopulation[], power: number): number => mean(topAnswerBriers(populations, power));

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * How close to the best Brier score another power's must be, in standard errors of their per-problem
 * difference, to count as no worse (the one-standard-error rule): of those, the power nearest φ as fitted
 * (γ = 1) is chosen. Noise alone can put a sharper power first: on the 100 held-out problems of a quick
 * run φ² scored 0.1176 against φ's 0.1197 (−0.0021 ± 0.0073), where 300 problems further on put it at
 * 0.1299 against 0.1222; and on the first 300 of the shipped run's held-out problems φ³ came first at step
 * level (0.0517 against φ²'s 0.0525), where 200 validation problems put it at 0.0989 against 0.0944. The
 * rule chooses 1 for the quick run and 1.5 for the shipped run at either level (docs/token-twist.md,
 * "Fifteenth step").
 */
export const FINAL_POWER_EVIDENCE = 1;

/** How far a power reads φ from as it is: |log γ| (φ^2 and φ^0.5 are as far from φ). */
const distanceFromFitted = (power: number) => Math.abs(Math.log(power));

/**
 * The power to end on: of the candidates whose Brier score of the top answer is within
 * FINAL_POWER_EVIDENCE standard errors (of the per-problem difference) of the lowest, the one nearest
 * power 1 (the smaller of two as near); and every candidate's score.
 */
export function chooseFinalPower(
  populations: readonly EndedPopulation[],
  powers: readonly number[] = FINAL_POWERS,
): { power: number; brier: number[] } {
  if (!populations.length) return { power: UNCHOSEN_FINAL_POWER, brier: [] };
  const perProblem = powers.map((power) => topAnswerBriers(populations, power));
  const brier = perProblem.map(mean);
  const best = brier.indexOf(Math.min(...brier));
  const noWorse = (i: number) => {
    const loss = perProblem[i].map((b, k) => b - perProblem[best][k]);
    const m = mean(loss);
    const n = loss.length;
    const stderr = n > 1 ? Math.sqrt(loss.reduce((a, d) => a + (d - m) ** 2, 0) / (n - 1) / n) : 0;
    return m <= FINAL_POWER_EVIDENCE * stderr;
  };
  let chosen = best;
  powers.forEach((power, i) => {
    if (!noWorse(i)) return;
    const [d, dChosen] = [distanceFromFitted(power), distanceFromFitted(powers[chosen])];
    if (d < dChosen || (d === dChosen && power < powers[chosen])) chosen = i;
  });
  return { power: powers[chosen], brier };
}

export interface FinalPowerFitOptions {
  /** The run's seed: each problem's SMC seed. */
  seed: number;
  maxTokens: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/**
 * SMC under `twist` at `level` on each problem, ending on φ (the twist's own value at the end, which the
 * verifier `phi` read with power 1 also gives, at either level), seeded by the run's seed and the problem's place.
 * Undefined when the signal stopped it.
 */
export async function endedPopulations(
  model: LoadedModel,
  twist: Twist,
  level: SmcLevel,
  phi: LineVerifier,
  problems: readonly MathProblem[],
  o: FinalPowerFitOptions,
): Promise<EndedPopulation[] | undefined> {
  const { tokenizer, lm } = model;
  const asFitted = phi.withFinalPower(1);
  const populations: EndedPopulation[] = [];
  for (const [i, problem] of problems.entries()) {
    if (o.signal?.aborted) return undefined;
    const { prompt, maxTokens } = encodeWithinContext(model, problem.question, o.maxTokens);
    const run = await runTwistedSmc(lm, prompt, {
      ...evalSmcOptions(
        FINAL_POWER_FIT.particles,
        level,
        maxTokens,
        Number(hashString64(`final-power:${o.seed}:${i}`) % 2147483647n),
        tokenizer,
      ),
      twist,
      signal: o.signal,
    }).catch((e: unknown) => {
      if (o.signal?.aborted) return undefined;
      throw e;
    });
    if (!run) return undefined;
    const texts = run.particles.map((p) => tokenizer.decode(p.tokens));
    populations.push({
      texts,
      right: texts.map((t) => isCorrect(t, problem.gold)),
      logWeights: run.particles.map((p) => p.logWeight),
      logPhi: texts.map((t) => asFitted.finalLogValue(t)),
    });
    o.onProgress?.(i + 1, problems.length);
  }
  // A stop asked for while the last problem ran (or by its progress) stops the finish all the same.
  return o.signal?.aborted ? undefined : populations;
}

/**
 * The power a run's finished twist ends on: chosen (chooseFinalPower) on the populations of up to
 * FINAL_POWER_FIT.problems of the held-out problems; UNCHOSEN_FINAL_POWER when there are none. `twist`
 * is the finished twist at the run's level, `verifier` the line verifier it ends its lines with.
 * Undefined when the signal stopped it.
 */
export async function chooseRunFinalPower(
  model: LoadedModel,
  twist: Twist,
  level: SmcLevel,
  verifier: LineVerifier,
  o: FinalPowerFitOptions & { heldOut: readonly MathProblem[] },
): Promise<{ power: number; brier: number[]; problems: number } | undefined> {
  const problems = o.heldOut.slice(0, FINAL_POWER_FIT.problems);
  const populations = await endedPopulations(model, twist, level, verifier, problems, o);
  return populations && { ...chooseFinalPower(populations), problems: populations.length };
}
