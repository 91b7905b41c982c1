/**
 * A toy language model whose sequences can be enumerated: 3 content tokens and EOS, at most 5
 * generated tokens. It implements the engine's CausalLM interface in process, so the SMC code under
 * test is exactly the code that runs the ONNX model. Exact Z = Σ p(s)·φ(s) and the exact optimal
 * twists are computed by enumeration.
 */
import { CausalLM, DecoderState, StepOutput } from "../../src/engine/lm/causalLm";
import { hashString64 } from "../../src/engine/util/rng";
import { logitsInMemory } from "../../src/engine/lm/decoder/stepReaders";

export const TOY_VOCAB = 4;
export const TOY_EOS = 3;
export const TOY_MAX_TOKENS = 5;
export const TOY_PROMPT = [TOY_EOS];

/** A deterministic pseudo-random number in [0, 1) for a label. */
export function hashUnit(label: string): number {
  return Number(hashString64(label) % 1000003n) / 1000003;
}

/** Next-token log-probabilities after `prefix` (generated tokens only). */
export function toyLogProbs(prefix: readonly number[], salt = "toy"): number[] {
  const logits = Array.from({ length: TOY_VOCAB }, (_, s) => 2.5 * hashUnit(`${salt}|${prefix.join(",")}|${s}`));
  logits[TOY_EOS] -= 0.7; // end a little less often than continue
  const m = Math.max(...logits);
  const lse = m + Math.log(logits.reduce((a, x) => a + Math.exp(x - m), 0));
  return logits.map((x) => x - lse);
}

class ToyState implements DecoderState {
  constructor(readonly rows: number[][]) {}
  get batch() {
    return this.rows.length;
  }
  get length() {
    return Math.max(0, ...this.rows.map((r) => r.length));
  }
  select(rows: readonly number[]): ToyState {
    return new ToyState(
      rows.map((r) => {
        if (r < 0 || r >= this.rows.length) throw new RangeError(`row ${r}`);
        return this.rows[r].slice();
      }),
    );
  }
  dispose(): void {}
}

export class ToyModel implements CausalLM {
  readonly vocabSize = TOY_VOCAB;
  readonly hiddenSize = 0;
  readonly device = "toy";
  forwardPasses = 0;

  async prefill(tokens: readonly number[]): Promise<StepOutput> {
    return this.output(new ToyState([[]]), tokens);
  }

  async step(state: DecoderState, tokens: readonly (number | null)[]): Promise<StepOutput> {
    const s = state as ToyState;
    if (tokens.length !== s.batch) throw new RangeError("batch mismatch");
    this.forwardPasses++;
    const rows = s.rows.map((r, i) => (tokens[i] === null ? r : [...r, tokens[i]!]));
    return this.output(new ToyState(rows), []);
  }

  async dispose(): Promise<void> {}

  private output(state: ToyState, _prompt: readonly number[]): StepOutput {
    const logits = new Float32Array(state.batch * TOY_VOCAB);
    state.rows.forEach((r, i) => logits.set(toyLogProbs(r), i * TOY_VOCAB));
    return { ...logitsInMemory(logits, TOY_VOCAB), state };
  }
}

export const toyDecode = (tokens: readonly number[]) => tokens.join("");

/** A complete sequence of the toy model with its probability. */
export interface ToySequence {
  tokens: number[];
  logP: number;
}

/** Next-token log-probabilities over the toy vocabulary after a prefix of generated tokens. */
export type ToyLogProbs = (prefix: readonly number[]) => number[];

/** Every complete sequence (ends in EOS within the limit, or cut at the limit), with log p. */
export function enumerateToy(logProbs: ToyLogProbs = toyLogProbs): ToySequence[] {
  const out: ToySequence[] = [];
  const walk = (prefix: number[], logP: number) => {
    const lp = logProbs(prefix);
    for (let s = 0; s < TOY_VOCAB; s++) {
      const next = logP + lp[s];
      if (s === TOY_EOS) out.push({ tokens: prefix, logP: next });
      else if (prefix.length + 1 >= TOY_MAX_TOKENS) out.push({ tokens: [...prefix, s], logP: next });
      else walk([...prefix, s], next);
    }
  };
  walk([], 0);
  return out;
}

/** Exact Z = Σ p(s)·φ(s) and the exact optimal twist ψ*(prefix) = E_p[φ | prefix] for every prefix. */
export function exactTwist(logPhi: (text: string) => number, logProbs: ToyLogProbs = toyLogProbs) {
  const seqs = enumerateToy(logProbs);
  const mass = new Map<string, number>(); // Σ p(s)φ(s) over completions of each prefix
  const prob = new Map<string, number>(); // p(prefix)
  let z = 0;
  for (const { tokens, logP } of seqs) {
    const w = Math.exp(logP + logPhi(toyDecode(tokens)));
    z += w;
    for (let l = 0; l <= tokens.length; l++) {
      const key = tokens.slice(0, l).join(",");
      mass.set(key, (mass.get(key) ?? 0) + w);
    }
  }
  // p(prefix) by the chain rule, for ψ* = mass / p.
  const walk = (prefix: number[], logP: number) => {
    prob.set(prefix.join(","), Math.exp(logP));
    if (prefix.length >= TOY_MAX_TOKENS) return;
    const lp = logProbs(prefix);
    for (let s = 0; s < TOY_EOS; s++) walk([...prefix, s], logP + lp[s]);
  };
  walk([], 0);
  const logPsi = (prefix: readonly number[]) => {
    const key = prefix.join(",");
    return Math.log(mass.get(key) ?? 0) - Math.log(prob.get(key)!);
  };
  return { z, logPsi, sequences: seqs };
}
