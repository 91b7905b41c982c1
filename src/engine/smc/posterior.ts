/** The answer of an SMC run: a weighted vote over the particles' extracted final answers. */
import { extractAnswer } from "../math/answer";
import type { AnswerProbability } from "../../protocol/record";
import { normalize } from "./weights";

export type { AnswerProbability };

export interface Posterior {
  /** The most probable answer, or null when no particle gave one. */
  answer: string | null;
  /** Answers by decreasing probability; particles without an answer are left out. */
  posterior: AnswerProbability[];
  /** Probability mass of particles whose text has no answer. */
  unanswered: number;
}

/**
 * Weighted vote: each particle's normalised weight goes to its extracted answer. When every weight is
 * zero (a collapsed run) the particles count equally, so the user still sees what they said.
 */
export function answerPosterior(texts: readonly string[], logWeights: readonly number[]): Posterior {
  const dead = logWeights.every((w) => w === -Infinity);
  const w = dead ? new Float64Array(texts.length).fill(1 / Math.max(texts.length, 1)) : normalize(logWeights);
  const mass = new Map<string, { probability: number; particles: number }>();
  let unanswered = 0;
  texts.forEach((text, i) => {
    const a = extractAnswer(text);
    if (!a) {
      unanswered += w[i];
      return;
    }
    const entry = mass.get(a.key) ?? { probability: 0, particles: 0 };
    entry.probability += w[i];
    entry.particles++;
    mass.set(a.key, entry);
  });
  const posterior = [...mass]
    .map(([answer, v]) => ({ answer, ...v }))
    .sort((a, b) => b.probability - a.probability || b.particles - a.particles || (a.answer < b.answer ? -1 : 1));
  return { answer: posterior[0]?.answer ?? null, posterior, unanswered };
}
