/**
 * Where each particle's next token comes from, fastest first:
 * - "pass": the draw the model made for the particle's row in the forward pass itself (the model's own
 *   tempered distribution, untwisted; each row's one draw serves the first particle that asks);
 * - "model": a draw the model makes afterwards from any row of an output (siblings after resampling, the
 *   prompt's row for all K), from a low-rank token twist's proposal too, which it evaluates there;
 * - "logits": logits read here, in JavaScript (twists given as code, φ put on EOS, the clamped
 *   particle of conditional SMC, training's proposals, which need the whole row).
 * Every source returns the same thing: the token, log p, log q, log ψ and the confidence gap.
 */
import type { CausalLM, GraphSampling, StepOutput, TokenTwistWeights } from "../lm/causalLm";
import type { Rng } from "../util/rng";
import { drawCategorical, LogitDraw, LogitProposal } from "./logitProposal";
import { drawOnModel, passDraw, readDrawnRows } from "./modelDraws";
import type { Particle } from "./particles";
import type { TokenTwist, TwistInput } from "./twist";

export interface Proposal {
  draw: LogitDraw;
  /** Drawn where the model runs (in its pass or its draw graph), not from logits read here. */
  inGraph: boolean;
  /** log φ put on each EOS token in place of ψ (token level, logits source only). */
  eosPhi: Map<number, number>;
}

/** What training's onProposal reads of a step's logits-drawn proposals, one row per mover. */
export interface ProposalRows {
  logProbs: Float32Array;
  eosLogPsi: Float32Array;
}

export interface TokenSourceOptions {
  level: "token" | "step";
  temperature: number;
  tokenTwist?: TokenTwist;
  /** log φ of a finished text when the answer is known. */
  known?: (text: string) => number;
  /** Training reads every proposal's full row: all tokens are then drawn from logits. */
  wantsRows: boolean;
}

export class TokenSources {
  /** The model draws in its forward pass: each pass takes a uniform per row. */
  private readonly inPass: boolean;
  private readonly onModel: boolean;
  private readonly twistWeights?: TokenTwistWeights;
  private readonly logitProposal: LogitProposal;
  private readonly claimed = new WeakMap<StepOutput, Set<number>>();
  /** Conditional SMC: the particle that follows these tokens (then EOS), drawn from its logits. */
  clamp?: { particle: Particle; tokens: readonly number[] };

  constructor(
    private readonly lm: CausalLM,
    private readonly o: TokenSourceOptions,
    private readonly rng: Rng,
    readonly eosIds: readonly number[],
  ) {
    // The model's own tempered distribution (no token twist, no φ put on EOS) can be drawn in the pass.
    const untwisted = !o.tokenTwist && (o.level === "step" || !o.known);
    this.inPass = lm.samplesInGraph === true && untwisted && !o.wantsRows;
    this.twistWeights = !o.known ? o.tokenTwist?.weights : undefined;
    this.onModel = lm.samplesInGraph === true && !o.wantsRows && (untwisted || this.twistWeights !== undefined);
    // At T = 1 that proposal is p itself: one pass of exponentials serves the normaliser and the draw.
    this.logitProposal = new LogitProposal(lm.vocabSize, 1 / o.temperature, untwisted && o.temperature === 1, eosIds);
  }

  /** The uniforms of a forward pass's own draws (one per row), when the model draws there. */
  sampling(batch: number): GraphSampling | undefined {
    return this.inPass
      ? { uniforms: Float64Array.from({ length: batch }, () => this.rng.uniform()), temperature: this.o.temperature }
      : undefined;
  }

  /**
   * One proposal per mover, in order; null where no continuation has twisted mass (the particle's
   * weight is zero). `finalLogPhi` gives a particle's φ for EOS where it replaces ψ; `rows`, when given,
   * receives each mover's log p row and EOS log ψ (training).
   */
  async propose(
    movers: readonly Particle[],
    twistInput: (rows: Particle[]) => Promise<TwistInput>,
    finalLogPhi: (p: Particle, estimate: number) => number,
    nan: (p: Particle, culprit: string) => Error,
    rows?: ProposalRows,
  ): Promise<(Proposal | null)[]> {
    const { o, lm } = this;
    const V = lm.vocabSize;
    const source = movers.map((p): "pass" | "model" | "logits" => {
      if (this.clamp?.particle === p) return "logits";
      const { out, row } = p.pending!;
      if (this.inPass && this.claim(out, row)) return "pass";
      return this.onModel && out.drawRows && (!this.twistWeights || out.readHidden) ? "model" : "logits";
    });
    const byModel = movers.filter((_, m) => source[m] === "model");
    const modelDrawn = !byModel.length
      ? []
      : await drawOnModel(
          byModel.map((p) => p.pending!),
          () => this.rng.uniform(),
          o.temperature,
          this.twistWeights,
        );
    const fromLogits = movers.filter((_, m) => source[m] === "logits");
    const rowLogits = await readDrawnRows(fromLogits.map((p) => p.pending!));
    const psiNext = o.tokenTwist && fromLogits.length ? await o.tokenTwist.logPsiNext(await twistInput(fromLogits)) : undefined;
    // Each mover's place in its source's list (modelDrawn, or rowLogits/psiNext).
    const index = new Map<Particle, number>();
    byModel.forEach((p, i) => index.set(p, i));
    fromLogits.forEach((p, i) => index.set(p, i));
    return movers.map((p, m) => {
      const { out, row } = p.pending!;
      const j = index.get(p) ?? 0;
      if (source[m] !== "logits") {
        const d = source[m] === "pass" ? passDraw(out.samples!, row) : modelDrawn[j];
        if (Number.isNaN(d.logP) || Number.isNaN(d.logQ) || Number.isNaN(d.logPsi))
          throw nan(p, Number.isNaN(d.logP) ? "the model's logits" : "the twist");
        return {
          draw: { token: d.token, logP: d.logP, logQ: d.logQ, logPsi: d.logPsi, gap: d.logpMax - d.logP },
          eosPhi: new Map(),
          inGraph: true,
        };
      }
      const logits = rowLogits.get(out)!.get(row)!;
      const psi = psiNext?.subarray(j * V, (j + 1) * V);
      const clamped = this.clamp?.particle === p ? this.clamp.tokens : undefined;
      const forced = clamped ? (p.tokens.length < clamped.length ? clamped[p.tokens.length] : this.eosIds[0]) : undefined;
      const choose = (w: Float64Array, sum: number) => forced ?? drawCategorical(w, sum, this.rng);
      const proposal = this.logitProposal.propose(
        logits,
        psi,
        o.level === "token" ? (estimate) => finalLogPhi(p, estimate) : undefined,
        choose,
        (culprit) => nan(p, culprit),
      );
      if (rows) {
        for (let s = 0; s < V; s++) rows.logProbs[m * V + s] = logits[s] - proposal.logNorm;
        this.eosIds.forEach((e, i) => (rows.eosLogPsi[m * this.eosIds.length + i] = proposal.eosPhi.get(e) ?? (psi ? psi[e] : 0)));
      }
      return proposal.draw ? { draw: proposal.draw, eosPhi: proposal.eosPhi, inGraph: false } : null;
    });
  }

  /** The in-pass draw of `out`'s row, the first time it is asked for. */
  private claim(out: StepOutput, row: number): boolean {
    if (!out.samples) return false;
    const rows = this.claimed.get(out) ?? new Set<number>();
    this.claimed.set(out, rows);
    if (rows.has(row)) return false;
    rows.add(row);
    return true;
  }
}
