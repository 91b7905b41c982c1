/**
 * A token drawn here, in JavaScript, from one row of logits: the proposal q ∝ p^{1/T}·ψ, with φ in
 * place of ψ for EOS where the final potential is known (token level). Used where the model cannot
 * draw itself: twists given as code, a known φ on EOS, the clamped particle, training's proposals.
 */
import { Rng } from "../util/rng";

export interface LogitDraw {
  token: number;
  /** log p(token) at T = 1, log q(token) under the proposal, log ψ (or φ) of the token. */
  logP: number;
  logQ: number;
  logPsi: number;
  /** max log p − log p(token): the confidence gap. */
  gap: number;
}

export interface RowProposal {
  /** log Σ exp(logits): the row's log p normaliser. */
  logNorm: number;
  /** log φ put on each EOS token, where it replaced ψ. */
  eosPhi: Map<number, number>;
  /** The draw, or null when no continuation has twisted mass (the particle's weight is zero). */
  draw: LogitDraw | null;
}

export class LogitProposal {
  // Scratch buffers reused across rows and steps.
  private readonly prop: Float64Array;
  private readonly weights: Float64Array;

  constructor(
    private readonly vocab: number,
    private readonly inverseTemperature: number,
    /** q = p (untwisted at T = 1): one pass of exponentials serves the normaliser and the draw. */
    private readonly plain: boolean,
    private readonly eosIds: readonly number[],
  ) {
    this.prop = new Float64Array(vocab);
    this.weights = new Float64Array(vocab);
  }

  /**
   * Draws from `logits` (one row) with log ψ `psi` (one row, or none); `eosPhi(ψ)` gives φ for EOS
   * where it applies (token level). `choose` picks the token from the unnormalised weights (a draw, or
   * a forced token). `nan` names what produced a NaN, for the caller's error.
   */
  propose(
    logits: Float32Array,
    psi: Float32Array | undefined,
    eosPhi: ((psi: number) => number) | undefined,
    choose: (weights: Float64Array, sum: number) => number,
    nan: (culprit: string) => Error,
  ): RowProposal {
    const { vocab: V, prop, weights } = this;
    const invT = this.inverseTemperature;
    let max = -Infinity;
    for (let s = 0; s < V; s++) if (logits[s] > max) max = logits[s];
    let sum = 0;
    for (let s = 0; s < V; s++) sum += weights[s] = Math.exp(logits[s] - max);
    const logNorm = max + Math.log(sum);
    const phis = new Map<number, number>();
    let propMax = -Infinity;
    let qSum = 0;
    if (this.plain) {
      // q = p: the weights above are the proposal's (prop is not needed).
      propMax = max - logNorm;
      qSum = sum;
    } else {
      // Proposal logits log q̃(s) = log p(s)/T + log ψ(s), with φ for the EOS option where it is known.
      for (let s = 0; s < V; s++) {
        const v = (logits[s] - logNorm) * invT + (psi ? psi[s] : 0);
        prop[s] = v;
        if (v > propMax) propMax = v;
      }
      if (eosPhi) {
        for (const s of this.eosIds) {
          if (logits[s] - logNorm < -30) continue; // p(EOS) negligible: the caller corrects if it is drawn
          const phi = eosPhi(psi ? psi[s] : 0);
          phis.set(s, phi);
          prop[s] = (logits[s] - logNorm) * invT + phi;
          if (prop[s] > propMax) propMax = prop[s];
        }
      }
      if (propMax > -Infinity) for (let s = 0; s < V; s++) qSum += weights[s] = Math.exp(prop[s] - propMax);
    }
    if (Number.isNaN(logNorm) || Number.isNaN(qSum)) throw nan(Number.isNaN(logNorm) ? "the model's logits" : "the twist");
    if (!(qSum > 0)) return { logNorm, eosPhi: phis, draw: null };
    const s = choose(weights, qSum);
    const logP = logits[s] - logNorm;
    const logQ = (this.plain ? logP : prop[s]) - (propMax + Math.log(qSum));
    return { logNorm, eosPhi: phis, draw: { token: s, logP, logQ, logPsi: phis.get(s) ?? (psi ? psi[s] : 0), gap: max - logits[s] } };
  }
}

/** Inverse-CDF draw from unnormalised probabilities w[0..V) with total `sum`. */
export function drawCategorical(w: Float64Array, sum: number, rng: Rng): number {
  let u = rng.uniform() * sum;
  let last = 0;
  for (let s = 0; s < w.length; s++) {
    if (w[s] === 0) continue;
    u -= w[s];
    last = s;
    if (u < 0) return s;
  }
  return last;
}
