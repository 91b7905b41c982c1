/**
 * Plain batched sampling: K completions of one prompt, advancing together one token per forward pass.
 * The prompt is prefilled once and its cache broadcast to the K rows; a row that ends stops costing
 * compute (it is dropped from the batch).
 */
import { Rng } from "../util/rng";
import { CausalLM, DecoderState, GraphSampling, StepOutput } from "./causalLm";
import { sampleToken } from "./distribution";

export interface GenerateOptions {
  numSamples: number;
  maxTokens: number;
  /** 0 is greedy. */
  temperature: number;
  seed: number;
  isEos: (token: number) => boolean;
}

export interface GeneratedSequence {
  tokens: number[];
  finishReason: "eos" | "length";
}

export interface GenerateResult {
  sequences: GeneratedSequence[];
  promptTokens: number;
  /** Forward passes after the prefill, and the tokens they produced. */
  steps: number;
  generatedTokens: number;
  prefillMs: number;
  decodeMs: number;
}

export async function generate(lm: CausalLM, prompt: readonly number[], options: GenerateOptions): Promise<GenerateResult> {
  const { numSamples, maxTokens, temperature } = options;
  if (!Number.isInteger(numSamples) || numSamples < 1) throw new RangeError(`numSamples must be a positive integer, got ${numSamples}`);
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new RangeError(`maxTokens must be a positive integer, got ${maxTokens}`);
  if (!(temperature >= 0)) throw new RangeError(`temperature must be >= 0, got ${temperature}`);
  const rng = new Rng(options.seed);
  // Draws where the model runs when it can (greedy needs no draw); rows beyond the ones drawn for fall back to JavaScript.
  const inGraph = lm.samplesInGraph === true && temperature > 0;
  const sampling = (batch: number): GraphSampling | undefined =>
    inGraph ? { uniforms: Float64Array.from({ length: batch }, () => rng.uniform()), temperature } : undefined;
  const t0 = performance.now();
  const first = await lm.prefill(prompt, sampling(1));
  const prefillMs = performance.now() - t0;

  const sequences: GeneratedSequence[] = Array.from({ length: numSamples }, () => ({ tokens: [], finishReason: "length" }));
  // Every row starts from the prompt's single logits row; `active[i]` is the sequence that batch row i extends.
  let active = sequences.map((_, i) => i);
  let current: StepOutput = first;
  let drawn = first.samples;
  let logitRow = active.map(() => 0);
  let state: DecoderState = first.state;
  let steps = 0;
  let generated = 0;
  const t1 = performance.now();
  try {
    for (let t = 0; t < maxTokens && active.length; t++) {
      // After the prefill every row reads logits row 0, whose one in-graph draw serves only the first.
      const inGraphRow = (i: number) => drawn !== undefined && logitRow[i] === i;
      const others = active.map((_, i) => i).filter((i) => !inGraphRow(i));
      const next = active.map((_, i) => (inGraphRow(i) ? drawn!.token[i] : -1));
      if (inGraph && current.drawRows && others.length) {
        // The model draws for the rows it did not draw for in the pass (after the prefill, all but the first).
        const more = await current.drawRows({
          rows: others.map((i) => logitRow[i]),
          uniforms: others.map(() => rng.uniform()),
          temperature,
        });
        others.forEach((i, k) => (next[i] = more.token[k]));
      } else if (others.length) {
        const wanted = [...new Set(others.map((i) => logitRow[i]))];
        const read = new Map((await current.readRows(wanted)).map((logits, k) => [wanted[k], logits]));
        for (const i of others) next[i] = sampleToken(read.get(logitRow[i])!, 0, lm.vocabSize, temperature, rng);
      }
      current.release();
      generated += next.length;
      const keep: number[] = [];
      next.forEach((tok, i) => {
        const seq = sequences[active[i]];
        if (options.isEos(tok)) seq.finishReason = "eos";
        else {
          seq.tokens.push(tok);
          keep.push(i);
        }
      });
      if (!keep.length || t === maxTokens - 1) break;
      // Rows of the state that continue: the broadcast (first step) and the drop of finished rows are one select.
      const rows = state.batch === 1 ? keep.map(() => 0) : keep;
      if (rows.length !== state.batch || rows.some((r, i) => r !== i)) {
        const selected = state.select(rows);
        state.dispose();
        state = selected;
      }
      const out = await lm.step(
        state,
        keep.map((i) => next[i]),
        sampling(keep.length),
      );
      steps++;
      state = out.state;
      current = out;
      drawn = out.samples;
      active = keep.map((i) => active[i]);
      logitRow = active.map((_, i) => i);
    }
  } finally {
    current.release();
    state.dispose();
  }
  return { sequences, promptTokens: prompt.length, steps, generatedTokens: generated, prefillMs, decodeMs: performance.now() - t1 };
}
