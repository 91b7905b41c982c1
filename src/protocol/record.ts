/**
 * The record of one SMC run, step by step: enough for a visualisation to replay every trajectory,
 * resampling and weight. One format serves the CLI (--record), the editor panel and training. The
 * engine builds these types and every reader imports them from here.
 */

/**
 * A log weight as it crosses a process boundary. JSON has no infinities, so the weight of a dead
 * particle (−∞) travels as null, everywhere: the engine encodes it once, readers decode it.
 */
export type WireLogWeight = number | null;

export function encodeLogWeight(w: number): WireLogWeight {
  return w === -Infinity ? null : w;
}

export function decodeLogWeight(w: WireLogWeight): number {
  return w === null ? -Infinity : w;
}

export interface ParticleStep {
  /** Index of this particle's parent in the previous step (resampling shows as parents ≠ own index). */
  parent: number;
  /** Text this particle added in this step ("" once finished). */
  text: string;
  /** Log weight after this step's reweighting, before any resampling that follows it; null is −∞. */
  logWeight: WireLogWeight;
  finished: boolean;
}

export interface SmcStepRecord {
  step: number;
  /** Token level: one token per particle; step level: one reasoning line per particle. */
  kind: "token" | "line";
  particles: ParticleStep[];
  ess: number;
  /** Whether the population was resampled right after this step. */
  resampled: boolean;
}

export interface SmcRecord {
  version: 1;
  problem: string;
  prompt: string;
  options: Record<string, unknown>;
  steps: SmcStepRecord[];
}

/** One answer of the weighted vote over the particles. */
export interface AnswerProbability {
  answer: string;
  probability: number;
  /** How many particles gave this answer. */
  particles: number;
}

/** A particle at the end of a solve: its text, its answer and its final log weight (null is −∞). */
export interface SolvedParticle {
  text: string;
  answer: string | null;
  logWeight: WireLogWeight;
  finishReason: "eos" | "length" | null;
}
