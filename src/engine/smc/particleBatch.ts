/**
 * The alive particles as one batch of the model: the decoder state (KV cache) with a row per alive
 * particle, advanced by one forward pass a token, and the step outputs particles may still draw from
 * (the rest are released: on a GPU their logits are freed).
 */
import type { CausalLM, DecoderState, GraphSampling, StepOutput } from "../lm/causalLm";
import type { Particle } from "./particles";

export class ParticleBatch {
  private readonly outputs: Set<StepOutput>;
  forwardPasses = 0;

  constructor(
    private readonly lm: CausalLM,
    private state: DecoderState,
    prompt: StepOutput,
  ) {
    this.outputs = new Set([prompt]);
  }

  /**
   * One forward pass: the alive particles in order, each fed its token (null: held, for a particle
   * waiting at a line's end). The cache is reordered first when the rows changed (resampling, endings).
   * Each fed particle then draws from its row of the new output.
   */
  async advance(alive: Particle[], fed: ReadonlyMap<Particle, number>, sampling: GraphSampling | undefined): Promise<void> {
    const rows = alive.map((p) => p.stateRow);
    if (rows.length !== this.state.batch || rows.some((r, i) => r !== i)) {
      const selected = this.state.select(rows);
      this.state.dispose();
      this.state = selected;
    }
    alive.forEach((p, i) => (p.stateRow = i));
    const out = await this.lm.step(
      this.state,
      alive.map((p) => fed.get(p) ?? null),
      sampling,
    );
    this.forwardPasses++;
    this.state = out.state;
    this.outputs.add(out);
    alive.forEach((p, i) => {
      if (fed.has(p)) p.pending = { out, row: i };
    });
  }

  /** Frees the outputs no alive particle draws from any more. */
  releaseUnreferenced(ps: readonly Particle[]): void {
    const referenced = new Set(ps.filter((p) => !p.finish).map((p) => p.pending?.out));
    for (const out of this.outputs) {
      if (referenced.has(out)) continue;
      out.release();
      this.outputs.delete(out);
    }
  }

  /** Frees everything: the outputs and the cache. */
  dispose(): void {
    for (const out of this.outputs) out.release();
    this.outputs.clear();
    this.state.dispose();
  }
}
