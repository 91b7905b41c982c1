/**
 * Twists: learned estimates ψ of "will this partial solution end correct?" that steer SMC.
 * Token-level twists (Zhao et al. 2024) give log ψ_t(s_<t, s) for every next token s; step-level
 * twists (Feng et al. 2025) give one log ψ per prefix, read at reasoning-line boundaries. Both read the
 * language model's final hidden state, and in-process twists (tests) may read the token prefixes.
 */

export interface TwistInput {
  /** rows × hiddenSize: the model's final normed hidden state after each row's prefix. */
  hidden?: Float32Array;
  hiddenSize: number;
  /** Each row's generated tokens so far (the prompt excluded). */
  prefixes: readonly (readonly number[])[];
}

export interface TokenTwist {
  readonly kind: "token";
  /** log ψ_t(s_<t, s) for every token s of the vocabulary: rows × vocab. */
  logPsiNext(input: TwistInput): Float32Array;
}

export interface StepTwist {
  readonly kind: "step";
  /** log ψ(s_1:k) of each row's prefix. */
  logValue(input: TwistInput): Float64Array;
}

export type Twist = TokenTwist | StepTwist;
