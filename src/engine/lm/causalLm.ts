/**
 * The small interface every language model behind the engine implements: the ONNX decoder, and
 * in-process toy models whose distributions can be enumerated in tests. The SMC loop, sampling and
 * training only ever see this.
 *
 * lm/ holds the language model behind the engine, by job:
 * - here, at the top: this interface, plain batched sampling over it (generate.ts) and the helpers
 *   over one row of logits (distribution.ts);
 * - model/: a model folder on disk (modelFolder.ts: config, generation config, which ONNX file), its
 *   tokenizer and prompt format, its context window, what it was trained on (modelDomain.ts), and
 *   loadModel.ts, which opens all of it and the decoder: the one entry point;
 * - decoder/: the onnxruntime decoder (onnxDecoder.ts) and what it runs on: the device choice, the
 *   sessions and their options, the KV cache and its reorders, each pass's inputs, the fixed-capacity
 *   cache's bookkeeping, the readers of its outputs;
 * - onnx/: graph surgery on the protobuf wire format: the SMC-ready copy of an export (prepareGraph.ts)
 *   with its fusions and sampling head, and the small graphs the decoder runs beside it.
 */

/** Per-row decoding state (for a transformer: its KV cache). Immutable: operations return new states. */
export interface DecoderState {
  readonly batch: number;
  /** Positions held by every row's cache, including held (masked) ones. */
  readonly length: number;
  /**
   * The state whose row i is this state's row `rows[i]`: broadcasting a prefilled prompt to K
   * particles, resampling by ancestor index, and dropping finished rows are all this one operation.
   */
  select(rows: readonly number[]): DecoderState;
  /** Frees what the state holds (device buffers). Using it afterwards is an error. */
  dispose(): void;
}

/** Asks a model that can sample where it runs for one draw per row from softmax(logits / temperature). */
export interface GraphSampling {
  /** One uniform in [0, 1) per row: the draw inverts the row's CDF at it. */
  uniforms: ArrayLike<number>;
  temperature: number;
}

/** The draws of a forward pass, one per row, with what importance weights need. */
export interface RowSamples {
  token: Int32Array;
  /** log p(token) at temperature 1. */
  logp: Float32Array;
  /** log q(token) under the tempered distribution the token was drawn from. */
  logq: Float32Array;
  /** The row's largest log p (for confidence features: max logit − logit of the token). */
  logpMax: Float32Array;
}

/** A low-rank token twist's weights, for a model that evaluates it where it runs: log ψ(s) = log σ((h·U)·W[:, s] + b[s]). */
export interface TokenTwistWeights {
  readonly hiddenSize: number;
  readonly vocabSize: number;
  readonly rank: number;
  /** hiddenSize × rank, rank × vocabSize and vocabSize, row-major. Must not change while a model uses them. */
  readonly U: Float32Array;
  readonly W: Float32Array;
  readonly b: Float32Array;
}

/** Draws from rows of an output, made where the model runs. */
export interface DrawRequest {
  /** The output row each draw reads; a row may be drawn from more than once. */
  rows: readonly number[];
  /** One uniform in [0, 1) per draw. */
  uniforms: ArrayLike<number>;
  temperature: number;
  /** A twisted proposal q ∝ p^{1/T}·ψ, ψ read from each drawn row's hidden state where it is. */
  twist?: { weights: TokenTwistWeights };
}

/** RowSamples of a DrawRequest, one per draw, with log ψ of each token when the proposal was twisted. */
export interface RowDraws extends RowSamples {
  logPsi?: Float32Array;
}

export interface StepOutput {
  /**
   * Next-token logits for each row (batch × vocabSize, row-major), read when first asked for: on a GPU
   * they stay on the device, and a step whose every draw was made in the graph never moves them.
   */
  readLogits(): Promise<Float32Array>;
  /** The logits of the given rows only, one vocabSize-long array each: on a GPU only those rows come back. */
  readRows(rows: readonly number[]): Promise<Float32Array[]>;
  /** Draws where the model runs, without bringing logits back (models that can; see DrawRequest). */
  drawRows?(request: DrawRequest): Promise<RowDraws>;
  /**
   * The final normed hidden state of the given rows (hiddenSize each; every position's, one after the
   * other, for encodeAll), where the model exposes it: on a GPU only those rows come back.
   */
  readHidden?(rows: readonly number[]): Promise<Float32Array[]>;
  /** Frees what the output holds where the model runs (logits, hidden state); call when no row will be read again. */
  release(): void;
  /** Present when sampling was asked for and the model can do it. */
  samples?: RowSamples;
  state: DecoderState;
}

export interface CausalLM {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  /** A short human description of where it runs, e.g. "cpu (onnxruntime-node, 2 threads)". */
  readonly device: string;
  /** Why this device: what else was tried and why it was not used. */
  readonly deviceChoice?: string;
  /** Bytes read back from a device so far, logits and hidden states apart; 0 on the CPU. */
  readonly readback?: { readonly logits: number; readonly hidden: number };
  /** Whether `sampling` is honoured: the model draws tokens where it runs (see GraphSampling). */
  readonly samplesInGraph?: boolean;
  /** Consumes a prompt as one row; the output is for the position after it. */
  prefill(tokens: readonly number[], sampling?: GraphSampling): Promise<StepOutput>;
  /**
   * Feeds one token per row of `state`; the input state is consumed (disposed). A `null` holds that
   * row: it takes no token (its output row is meaningless) while the others advance, which lets rows
   * that wait at a step boundary stay in the batch.
   */
  step(state: DecoderState, tokens: readonly (number | null)[], sampling?: GraphSampling): Promise<StepOutput>;
  /**
   * Teacher forcing: every position's logits (S × vocab) and hidden state (S × hidden) for one
   * sequence, from scratch. Training reads positive samples through it.
   */
  encodeAll?(tokens: readonly number[]): Promise<{ logits: Float32Array; hidden?: Float32Array }>;
  dispose(): Promise<void>;
}
