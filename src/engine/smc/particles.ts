/**
 * The particles of an SMC run: each one's tokens, log weight and log ψ, where its next-token
 * distribution lives, and its record; resampling copies them by ancestor.
 */
import type { StepOutput } from "../lm/causalLm";
import { encodeLogWeight, SmcStepRecord } from "../../protocol/record";
import { ConfidenceTracker } from "./twist";

/** Where a particle's next-token distribution lives: a row of some forward pass's output. */
export interface Pending {
  out: StepOutput;
  row: number;
}

export interface Particle {
  tokens: number[];
  logW: number;
  /** log ψ of the current prefix (token level: ψ_{t−1}; step level: ψ at the last boundary). */
  logPsi: number;
  finish: "eos" | "length" | null;
  /** Row of the live decoder state holding this particle's cache (alive particles only). */
  stateRow: number;
  pending: Pending | null;
  /** Step level: reached the end of a line and waits for the others. */
  waiting: boolean;
  /** Length of `tokens` when the last record was made, to report the text added since. */
  recorded: number;
  confidence: ConfidenceTracker;
}

/** K particles at the start: no tokens, weight 1, all drawing from the prompt's last row. */
export function initialParticles(K: number, prompt: StepOutput): Particle[] {
  return Array.from({ length: K }, () => ({
    tokens: [],
    logW: 0,
    logPsi: 0,
    finish: null,
    stateRow: 0,
    pending: { out: prompt, row: 0 },
    waiting: false,
    recorded: 0,
    confidence: new ConfidenceTracker(),
  }));
}

/** Particle i becomes a copy of particle ancestors[i], each with the average weight `logW`. */
export function copyAncestors(ps: Particle[], ancestors: readonly number[], logW: number): void {
  const old = ps.map((p) => ({ ...p, tokens: p.tokens }));
  ancestors.forEach((a, i) => {
    const src = old[a];
    Object.assign(ps[i], { ...src, tokens: src.tokens.slice(), confidence: src.confidence.copy(), logW });
  });
}

/** The step's record: each particle's parent, the text it added since the last record, its weight. */
export function stepRecord(
  step: number,
  kind: SmcStepRecord["kind"],
  ps: Particle[],
  parents: readonly number[],
  ess: number,
  resampled: boolean,
  decode: (tokens: readonly number[]) => string,
): SmcStepRecord {
  const particles = ps.map((p, i) => {
    const before = decode(p.tokens.slice(0, p.recorded));
    const text = p.recorded === p.tokens.length ? "" : decode(p.tokens).slice(before.length);
    p.recorded = p.tokens.length;
    return { parent: parents[i], text, logWeight: encodeLogWeight(p.logW), finished: p.finish !== null };
  });
  return { step, kind, particles, ess, resampled };
}
