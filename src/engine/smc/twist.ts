/**
 * Twists: learned estimates ψ of "will this partial solution end correct?" that steer SMC.
 * Token-level twists (Zhao et al. 2024) give log ψ_t(s_<t, s) for every next token s; step-level
 * twists (Feng et al. 2025) give one log ψ per prefix, read at reasoning-line boundaries. Both read the
 * language model's final hidden state, and in-process twists (tests) may read the token prefixes.
 */
import { TokenTwistWeights } from "../lm/causalLm";

export interface TwistInput {
  /** rows × hiddenSize: the model's final normed hidden state after each row's prefix. */
  hidden?: Float32Array;
  hiddenSize: number;
  /** Each row's generated tokens so far (the prompt excluded). */
  prefixes: readonly (readonly number[])[];
  /**
   * rows × CONFIDENCE_FEATURES: how far each row's sampled tokens fell below the model's own top choice
   * (see confidenceFeatures). A slip in a line of arithmetic usually shows here first.
   */
  confidence?: Float32Array;
  /** Turns a prefix into text, for twists that read what was written (the line verifier). */
  decode?: (tokens: readonly number[]) => string;
}

/** Number of confidence features per row: the sum and the maximum of the per-token gaps. */
export const CONFIDENCE_FEATURES = 2;

/** Running gap statistics of one sequence: gap_t = max_s log p(s | s_<t) − log p(s_t | s_<t) ≥ 0. */
export class ConfidenceTracker {
  sum = 0;
  max = 0;
  add(gap: number): void {
    this.sum += gap;
    if (gap > this.max) this.max = gap;
  }
  copy(): ConfidenceTracker {
    const c = new ConfidenceTracker();
    c.sum = this.sum;
    c.max = this.max;
    return c;
  }
  /** The features, squashed to a bounded range so a linear head stays well conditioned. */
  write(out: Float32Array, offset: number): void {
    out[offset] = Math.log1p(this.sum);
    out[offset + 1] = Math.log1p(this.max);
  }
}

export interface TokenTwist {
  readonly kind: "token";
  /** A low-rank head's weights, so a model that draws where it runs can evaluate ψ there too. */
  readonly weights?: TokenTwistWeights;
  /** log ψ_t(s_<t, s) for every token s of the vocabulary: rows × vocab (possibly computed by a runtime). */
  logPsiNext(input: TwistInput): Float32Array | Promise<Float32Array>;
}

export interface StepTwist {
  readonly kind: "step";
  /** Reads only the text of the prefixes, never `hidden`: SMC then fetches no hidden state for it. */
  readonly textOnly?: boolean;
  /** log ψ(s_1:k) of each row's prefix. */
  logValue(input: TwistInput): Float64Array;
}

export type Twist = TokenTwist | StepTwist;
