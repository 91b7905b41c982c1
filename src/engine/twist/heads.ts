/**
 * Twist heads on the frozen language model's final hidden state h (the seed's TwistModel). Both give
 * ψ as a probability of ending correct, log ψ = log σ(x) ≤ 0, so a twist can never outbid the final
 * potential φ = 1 of a correct finished solution — with unbounded ψ, a twist trained by CTL (which
 * fixes ψ only up to a scale per step) learned to avoid EOS.
 *
 * Token head (Zhao et al. 2024): x(h, s) = (h·U)·W[:, s] + b[s] for every token s, a rank-r
 * factorisation so big vocabularies stay cheap.
 *
 * Value head (Feng et al. 2025): x = w·h + u·f + c, from the hidden state h and the confidence features f
 * of the prefix (how far its sampled tokens fell below the model's top choice). It also serves as the
 * final potential when the answer is unknown.
 *
 * Initialisation: W = 0, w = u = 0 and biases BIAS_INIT, so ψ is the same constant σ(3) ≈ 0.95 for every
 * prefix and token: SMC then behaves as with ψ ≡ 1 (a constant cancels from every proposal and weight
 * ratio), while the gradient 1 − σ(x) ≈ 0.05 is large enough to learn from.
 */
import { Rng } from "../util/rng";
import { CONFIDENCE_FEATURES, StepTwist, TokenTwist, TwistInput } from "../smc/twist";

export const BIAS_INIT = 3;

/** log σ(z), stable for large |z|. */
export function logSigmoid(z: number): number {
  return z >= 0 ? -Math.log1p(Math.exp(-z)) : z - Math.log1p(Math.exp(z));
}

export interface TokenHeadParams {
  hiddenSize: number;
  vocabSize: number;
  rank: number;
  /** hiddenSize × rank, row-major. */
  U: Float32Array;
  /** rank × vocabSize, row-major. */
  W: Float32Array;
  /** vocabSize. */
  b: Float32Array;
}

export interface ValueHeadParams {
  hiddenSize: number;
  /** hiddenSize. */
  w: Float32Array;
  /** CONFIDENCE_FEATURES weights of the confidence features. */
  u: Float32Array;
  /** The bias, as a one-element array so the optimiser updates it in place. */
  c: Float32Array;
}

function requireHidden(input: TwistInput, hiddenSize: number): Float32Array {
  if (!input.hidden) throw new Error("this twist reads the model's last_hidden_state, which the model does not output");
  if (input.hiddenSize !== hiddenSize) throw new Error(`twist expects hidden size ${hiddenSize}, the model gives ${input.hiddenSize}`);
  return input.hidden;
}

export class TokenTwistHead implements TokenTwist {
  readonly kind = "token";
  constructor(readonly p: TokenHeadParams) {
    const { hiddenSize: H, vocabSize: V, rank: R } = p;
    if (p.U.length !== H * R || p.W.length !== R * V || p.b.length !== V)
      throw new Error("token twist head: parameter sizes disagree with its dimensions");
  }

  static init(hiddenSize: number, vocabSize: number, rank: number, rng: Rng): TokenTwistHead {
    // U is a random projection scaled to keep h·U of order 1; W starts at zero (ψ constant).
    const U = Float32Array.from({ length: hiddenSize * rank }, () => rng.normal() / Math.sqrt(hiddenSize));
    return new TokenTwistHead({
      hiddenSize,
      vocabSize,
      rank,
      U,
      W: new Float32Array(rank * vocabSize),
      b: new Float32Array(vocabSize).fill(BIAS_INIT),
    });
  }

  /** The rank-r features h·U of each row: rows × rank. */
  features(hidden: Float32Array, rows: number): Float32Array {
    const { hiddenSize: H, rank: R, U } = this.p;
    const z = new Float32Array(rows * R);
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < H; i++) {
        const h = hidden[r * H + i];
        if (h === 0) continue;
        for (let k = 0; k < R; k++) z[r * R + k] += h * U[i * R + k];
      }
    }
    return z;
  }

  /** The trainable arrays, in a fixed order (the optimiser's and the gradient's). */
  parameters(): Float32Array[] {
    return [this.p.U, this.p.W, this.p.b];
  }

  /** The logits x(h, s) of each row: rows × vocab. */
  logits(input: TwistInput): Float32Array {
    const rows = input.prefixes.length;
    const { vocabSize: V, rank: R, W, b } = this.p;
    const z = this.features(requireHidden(input, this.p.hiddenSize), rows);
    const out = new Float32Array(rows * V);
    for (let r = 0; r < rows; r++) {
      const o = out.subarray(r * V, (r + 1) * V);
      o.set(b);
      for (let k = 0; k < R; k++) {
        const zk = z[r * R + k];
        if (zk === 0) continue;
        const wk = W.subarray(k * V, (k + 1) * V);
        for (let s = 0; s < V; s++) o[s] += zk * wk[s];
      }
    }
    return out;
  }

  logPsiNext(input: TwistInput): Float32Array {
    return this.logits(input).map(logSigmoid);
  }
}

export class ValueTwistHead implements StepTwist {
  readonly kind = "step";
  constructor(readonly p: ValueHeadParams) {
    if (p.w.length !== p.hiddenSize || p.u.length !== CONFIDENCE_FEATURES || p.c.length !== 1)
      throw new Error("value twist head: parameter sizes disagree with its dimensions");
  }

  static init(hiddenSize: number): ValueTwistHead {
    return new ValueTwistHead({
      hiddenSize,
      w: new Float32Array(hiddenSize),
      u: new Float32Array(CONFIDENCE_FEATURES),
      c: Float32Array.of(BIAS_INIT),
    });
  }

  /** The logit z = w·h + u·f + c of each row (f = 0 when no features are given). */
  logits(hidden: Float32Array, rows: number, confidence?: Float32Array): Float64Array {
    const { hiddenSize: H, w, u } = this.p;
    const F = CONFIDENCE_FEATURES;
    const out = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      let z = this.p.c[0];
      for (let i = 0; i < H; i++) z += w[i] * hidden[r * H + i];
      if (confidence) for (let j = 0; j < F; j++) z += u[j] * confidence[r * F + j];
      out[r] = z;
    }
    return out;
  }

  parameters(): Float32Array[] {
    return [this.p.w, this.p.u, this.p.c];
  }

  logValue(input: TwistInput): Float64Array {
    const z = this.logits(requireHidden(input, this.p.hiddenSize), input.prefixes.length, input.confidence);
    return z.map(logSigmoid);
  }
}
