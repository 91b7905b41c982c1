/**
 * Twisted Sequential Monte Carlo over a language model, at token level (Zhao et al., ICML 2024) or at
 * reasoning-step level (Feng et al., ICLR 2025).
 *
 * Target: σ(s) ∝ p(s)·φ(s) over complete solutions s, with φ the final potential (a known-answer
 * reward, or the twist's own estimate of correctness, or 1). Intermediate targets
 * π_t(s_≤t) ∝ p(s_≤t)·ψ_t(s_≤t) (Zhao et al., Eq. 3).
 *
 * Token level: proposal q_t(s_t | s_<t) ∝ p(s_t | s_<t)^{1/T}·ψ_t(s_≤t) over the whole vocabulary from
 * one forward pass; incremental weight (Zhao et al., Eq. 5)
 *     w_t = p(s_t | s_<t)·ψ_t(s_≤t) / (ψ_{t−1}(s_<t)·q_t(s_t | s_<t)),
 * which at T = 1 is Σ_s p(s | s_<t)ψ_t(s_<t, s) / ψ_{t−1}(s_<t), the same for every choice of s_t.
 * Choosing EOS ends the particle, so there the final potential replaces the twist: ψ_t(s_<t, EOS) = φ(s_<t).
 *
 * Step level: each particle samples a whole line from p^{1/T} (weight p/q per token, 1 at T = 1); at the
 * line boundary the weight is multiplied by ψ(s_1:k)/ψ(s_1:k−1) (Feng et al., Eq. 7), and resampling
 * happens only at boundaries. When a particle ends, φ replaces ψ: the weight gains φ/ψ(s_1:k−1).
 *
 * Resampling (when ESS < threshold·K, or always/never) draws ancestors and resets every weight to the
 * average, so Ẑ = mean of the final weights is an unbiased estimate of Z = Σ_s p(s)φ(s)
 * (Zhao et al., Sec. 3: log Ẑ is a stochastic lower bound of log Z).
 */
import { CausalLM, DecoderState, GraphSampling, StepOutput } from "../lm/causalLm";
import { Rng } from "../util/rng";
import { encodeLogWeight, SmcStepRecord } from "../../protocol/record";
import { resample, ResamplingScheme } from "./resampling";
import { drawCategorical, LogitDraw, LogitProposal } from "./logitProposal";
import { drawOnModel, passDraw, readDrawnRows, readHiddenRows } from "./modelDraws";
import { CONFIDENCE_FEATURES, ConfidenceTracker, Twist, TwistInput } from "./twist";
import { effectiveSampleSize, logMeanExp, normalize } from "./weights";

export type SmcLevel = "token" | "step";
export type ResamplePolicy = "adaptive" | "always" | "never";

export interface SmcOptions {
  particles: number;
  level: SmcLevel;
  resampling: ResamplingScheme;
  /** Resample when ESS < essThreshold·K (adaptive policy). */
  essThreshold: number;
  resample: ResamplePolicy;
  /** Generated tokens per particle at most (EOS included); a particle cut there ends with φ applied. */
  maxTokens: number;
  /** Proposal temperature; the target stays p·φ (importance weights correct for it). */
  temperature: number;
  seed: number;
  twist?: Twist;
  /** log φ of a finished text when the answer is known (training, evaluation); else the twist estimates it. */
  logFinalPotential?: (text: string) => number;
  isEos: (token: number) => boolean;
  /** Step level: whether a token ends a reasoning line. */
  isLineEnd: (token: number) => boolean;
  decode: (tokens: readonly number[]) => string;
  /** Called after every SMC step with its record; a listener that keeps them has the full replay. */
  onStep?: (record: SmcStepRecord) => void;
  /** Cancels within one step. */
  signal?: AbortSignal;
  /**
   * Conditional SMC: particle 0 follows these tokens (then EOS) and always keeps its own lineage, the
   * others resample multinomially around it. Seeded with an exact target sample, E[log Ẑ] is an upper
   * bound on log Z (Zhao et al. 2024, Sec. 5), the counterpart of plain SMC's lower bound.
   */
  clamp?: readonly number[];
  /** Training hook, token level: each step's proposal q_t over the vocabulary and the hidden states it read. */
  onProposal?: (info: ProposalInfo) => void;
  /** Training hook, step level: the hidden states at the line boundaries reached in a step. */
  onBoundary?: (info: BoundaryInfo) => void;
}

export interface ProposalInfo {
  step: number;
  /** The particles that proposed a token, in row order. */
  particles: number[];
  /** rows × hiddenSize, when the model exposes hidden states. */
  hidden?: Float32Array;
  /** rows × vocab: the base model's log p(s | s_<t) of each row (temperature 1). */
  logProbs: Float32Array;
  /** The EOS tokens, and per row (rows × eosTokens) the log ψ the proposal used for each: φ when known. */
  eosTokens: readonly number[];
  eosLogPsi: Float32Array;
}

export interface BoundaryInfo {
  step: number;
  particles: number[];
  hidden?: Float32Array;
  confidence?: Float32Array;
}

export interface SmcParticle {
  tokens: number[];
  logWeight: number;
  finishReason: "eos" | "length" | null;
}

export interface SmcRunResult {
  particles: SmcParticle[];
  /** log Ẑ: log of the mean final weight, after the resets at resampling. −∞ if every weight died. */
  logZ: number;
  /** ESS after each step's reweighting. */
  ess: number[];
  /** Steps after which the population was resampled. */
  resampledAt: number[];
  steps: number;
  forwardPasses: number;
  generatedTokens: number;
  /** How many of those tokens the model drew where it runs (in its forward pass or its draw graph); the rest were drawn here from logits. */
  drawnInGraph: number;
  /** Set when every weight became zero: the population could not continue. */
  collapsed?: string;
}

export class SmcCancelled extends Error {
  constructor() {
    super("the SMC run was cancelled");
    this.name = "SmcCancelled";
  }
}

/** Where a particle's next-token distribution lives: a row of some forward pass's output. */
interface Pending {
  out: StepOutput;
  row: number;
}

interface Particle {
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

export function validateSmcOptions(o: SmcOptions): void {
  if (!Number.isInteger(o.particles) || o.particles < 1) throw new RangeError(`particles must be a positive integer, got ${o.particles}`);
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 1) throw new RangeError(`maxTokens must be a positive integer, got ${o.maxTokens}`);
  if (!(o.temperature > 0) || !Number.isFinite(o.temperature)) throw new RangeError(`temperature must be > 0 for SMC, got ${o.temperature}`);
  if (!(o.essThreshold >= 0 && o.essThreshold <= 1)) throw new RangeError(`essThreshold must be in [0, 1], got ${o.essThreshold}`);
  if (o.twist && o.level === "token" && o.twist.kind !== "token") throw new RangeError("token-level SMC needs a token twist");
  if (o.twist && o.level === "step" && o.twist.kind !== "step") throw new RangeError("step-level SMC needs a step (value) twist");
}

export async function runTwistedSmc(lm: CausalLM, prompt: readonly number[], o: SmcOptions): Promise<SmcRunResult> {
  validateSmcOptions(o);
  const rng = new Rng(o.seed);
  const K = o.particles;
  const V = lm.vocabSize;
  const tokenTwist = o.twist?.kind === "token" ? o.twist : undefined;
  const stepTwist = o.twist?.kind === "step" ? o.twist : undefined;
  const known = o.logFinalPotential;
  const eosIds: number[] = [];
  for (let s = 0; s < V; s++) if (o.isEos(s)) eosIds.push(s);

  // Tokens are drawn where the model runs when the proposal is the model's own tempered distribution
  // (no token twist, no φ put on EOS) and nobody needs the full rows (training's onProposal). Each
  // row's one draw in the forward pass serves the first particle that proposes from it.
  const untwistedProposal = !tokenTwist && (o.level === "step" || !known);
  const graphSampling = lm.samplesInGraph === true && untwistedProposal && !o.onProposal;
  // The model can also draw from any row of an output (siblings, the prompt's row for all K), and
  // from a low-rank token twist's proposal, which it then evaluates too: only the draws come back.
  const twistWeights = !known ? tokenTwist?.weights : undefined;
  const modelDraws = lm.samplesInGraph === true && !o.onProposal && (untwistedProposal || twistWeights !== undefined);
  // At T = 1 that proposal is p itself: one pass of exponentials serves the normaliser and the draw
  // (most of a step's time at a large vocabulary).
  const logitProposal = new LogitProposal(V, 1 / o.temperature, untwistedProposal && o.temperature === 1, eosIds);
  const sampling = (batch: number): GraphSampling | undefined =>
    graphSampling ? { uniforms: Float64Array.from({ length: batch }, () => rng.uniform()), temperature: o.temperature } : undefined;
  const claimed = new WeakMap<StepOutput, Set<number>>();
  /** The in-graph draw of `out`'s row, the first time it is asked for. */
  const claim = (out: StepOutput, row: number): boolean => {
    if (!out.samples) return false;
    const rows = claimed.get(out) ?? new Set<number>();
    claimed.set(out, rows);
    if (rows.has(row)) return false;
    rows.add(row);
    return true;
  };

  const first = await lm.prefill(prompt, sampling(1));
  let state: DecoderState = first.state;
  const ps: Particle[] = Array.from({ length: K }, () => ({
    tokens: [],
    logW: 0,
    logPsi: 0,
    finish: null,
    stateRow: 0,
    pending: { out: first, row: 0 },
    waiting: false,
    recorded: 0,
    confidence: new ConfidenceTracker(),
  }));
  // Step outputs that particles may still draw from; the rest are released (on a GPU their logits are freed).
  const outputs = new Set<StepOutput>([first]);
  const releaseUnreferenced = () => {
    const referenced = new Set(ps.filter((p) => !p.finish).map((p) => p.pending?.out));
    for (const out of outputs) {
      if (referenced.has(out)) continue;
      out.release();
      outputs.delete(out);
    }
  };
  const ess: number[] = [];
  const resampledAt: number[] = [];
  let parents = ps.map((_, i) => i);
  let steps = 0;
  let forwardPasses = 0;
  let generated = 0;
  let drawnInGraph = 0;
  let collapsed: string | undefined;

  // The hidden state is fetched (on a GPU: brought back) only for twists and listeners that read it.
  const twistReadsHidden = !(stepTwist?.textOnly ?? false);
  const twistInput = async (rows: Particle[], withHidden = twistReadsHidden): Promise<TwistInput> => {
    const confidence = new Float32Array(rows.length * CONFIDENCE_FEATURES);
    rows.forEach((p, i) => p.confidence.write(confidence, i * CONFIDENCE_FEATURES));
    return { hidden: withHidden ? await readHiddenRows(rows.map((p) => p.pending!), lm.hiddenSize) : undefined, hiddenSize: lm.hiddenSize, prefixes: rows.map((p) => p.tokens), confidence, decode: o.decode };
  };
  /** log φ of a particle that ends now; `estimate` is the twist's own guess when the answer is unknown. */
  const finalLogPhi = (p: Particle, estimate: number) => (known ? known(o.decode(p.tokens)) : estimate);

  try {
    while (ps.some((p) => !p.finish) && !collapsed) {
      if (o.signal?.aborted) throw new SmcCancelled();

      // 1. Propose: every alive particle that is not waiting at a boundary draws one token.
      const movers = ps.filter((p) => !p.finish && !p.waiting);
      const logProbs = o.onProposal ? new Float32Array(movers.length * V) : undefined;
      const eosLogPsi = o.onProposal ? new Float32Array(movers.length * eosIds.length) : undefined;
      const fed = new Map<Particle, number>();
      // Step level: particles that end now take the twist's value of their prefix as φ when the answer is
      // unknown; evaluated after the draws, for those particles only.
      const endsNow: Particle[] = [];
      // Where each mover's token comes from: its row's draw in the forward pass, a draw the model makes
      // now, or the logits read here (the clamped particle, proposals the model cannot evaluate).
      const source = movers.map((p): "pass" | "model" | "logits" => {
        if (o.clamp && p === ps[0]) return "logits";
        const { out, row } = p.pending!;
        if (graphSampling && claim(out, row)) return "pass";
        return modelDraws && out.drawRows && (!twistWeights || out.readHidden) ? "model" : "logits";
      });
      const byModel = movers.filter((_, m) => source[m] === "model");
      const modelDrawn = !byModel.length ? [] : await drawOnModel(byModel.map((p) => p.pending!), () => rng.uniform(), o.temperature, twistWeights);
      const fromLogits = movers.filter((_, m) => source[m] === "logits");
      const rowLogits = await readDrawnRows(fromLogits.map((p) => p.pending!));
      const psiNext = tokenTwist && fromLogits.length ? await tokenTwist.logPsiNext(await twistInput(fromLogits)) : undefined;
      // Each mover's place in its source's list (modelDrawn, or rowLogits/psiNext).
      const drawIndex = new Map<Particle, number>();
      byModel.forEach((p, i) => drawIndex.set(p, i));
      fromLogits.forEach((p, i) => drawIndex.set(p, i));
      movers.forEach((p, m) => {
        const { out, row } = p.pending!;
        const j = drawIndex.get(p) ?? 0;
        const nan = (culprit: string) => new Error(`NaN in ${culprit} at SMC step ${steps} (particle ${ps.indexOf(p)}, token ${p.tokens.length + 1}); the run was stopped`);
        let drawn: LogitDraw;
        let eosPhi = new Map<number, number>();
        if (source[m] !== "logits") {
          const d = source[m] === "pass" ? passDraw(out.samples!, row) : modelDrawn[j];
          if (Number.isNaN(d.logP) || Number.isNaN(d.logQ) || Number.isNaN(d.logPsi)) throw nan(Number.isNaN(d.logP) ? "the model's logits" : "the twist");
          drawn = { token: d.token, logP: d.logP, logQ: d.logQ, logPsi: d.logPsi, gap: d.logpMax - d.logP };
          drawnInGraph++;
        } else {
          const logits = rowLogits.get(out)!.get(row)!;
          const psi = psiNext?.subarray(j * V, (j + 1) * V);
          const forced = o.clamp && p === ps[0] ? (p.tokens.length < o.clamp.length ? o.clamp[p.tokens.length] : eosIds[0]) : undefined;
          const choose = (w: Float64Array, sum: number) => forced ?? drawCategorical(w, sum, rng);
          const proposal = logitProposal.propose(logits, psi, o.level === "token" ? (estimate) => finalLogPhi(p, estimate) : undefined, choose, nan);
          eosPhi = proposal.eosPhi;
          if (logProbs) {
            for (let s = 0; s < V; s++) logProbs[m * V + s] = logits[s] - proposal.logNorm;
            eosIds.forEach((e, i) => (eosLogPsi![m * eosIds.length + i] = eosPhi.get(e) ?? (psi ? psi[e] : 0)));
          }
          if (!proposal.draw) {
            // Every continuation has zero twisted mass: this particle's weight is zero.
            p.logW = -Infinity;
            p.finish = "eos";
            return;
          }
          drawn = proposal.draw;
        }
        const { token: s, logP, logQ, logPsi: logPsiS, gap } = drawn;
        generated++;
        if (o.level === "token") {
          p.logW += logP + logPsiS - p.logPsi - logQ;
          p.logPsi = logPsiS;
        } else {
          p.logW += logP - logQ;
        }
        if (o.isEos(s)) {
          p.finish = "eos";
          if (o.level === "step" && known) p.logW += known(o.decode(p.tokens)) - p.logPsi;
          else if (o.level === "step") endsNow.push(p);
          else if (!eosPhi.has(s) && known) p.logW += finalLogPhi(p, 0) - p.logPsi; // drawn despite negligible p(EOS)
          return;
        }
        // After the EOS check: an ending particle's value is of its prefix as it stood before the draw.
        p.confidence.add(gap);
        p.tokens.push(s);
        if (p.tokens.length >= o.maxTokens) {
          p.finish = "length";
          // The final potential replaces the twist; unknown answer: the twist's estimate, ratio 1.
          if (known) p.logW += known(o.decode(p.tokens)) - p.logPsi;
          return;
        }
        fed.set(p, s);
      });

      if (endsNow.length) {
        const values = stepTwist ? stepTwist.logValue(await twistInput(endsNow)) : undefined;
        endsNow.forEach((p, i) => (p.logW += (values ? values[i] : 0) - p.logPsi));
      }

      if (o.onProposal && movers.length) {
        o.onProposal({ step: steps, particles: movers.map((p) => ps.indexOf(p)), hidden: await readHiddenRows(movers.map((p) => p.pending!), lm.hiddenSize), logProbs: logProbs!, eosTokens: eosIds, eosLogPsi: eosLogPsi! });
      }

      // 2. Advance: one batched forward pass over the alive particles (waiting ones are held).
      const alive = ps.filter((p) => !p.finish);
      if (alive.length && fed.size) {
        const rows = alive.map((p) => p.stateRow);
        if (rows.length !== state.batch || rows.some((r, i) => r !== i)) {
          const selected = state.select(rows);
          state.dispose();
          state = selected;
        }
        alive.forEach((p, i) => (p.stateRow = i));
        const out = await lm.step(state, alive.map((p) => fed.get(p) ?? null), sampling(alive.length));
        forwardPasses++;
        state = out.state;
        outputs.add(out);
        const lineEnds: Particle[] = [];
        alive.forEach((p, i) => {
          if (!fed.has(p)) return;
          p.pending = { out, row: i };
          if (o.level === "step" && o.isLineEnd(fed.get(p)!)) lineEnds.push(p);
        });
        releaseUnreferenced();
        if (lineEnds.length) {
          // The boundary's weight ψ(s_1:k)/ψ(s_1:k−1), read from the hidden state after the line.
          const input = await twistInput(lineEnds, twistReadsHidden || o.onBoundary !== undefined);
          o.onBoundary?.({ step: steps, particles: lineEnds.map((p) => ps.indexOf(p)), hidden: input.hidden, confidence: input.confidence });
          const values = stepTwist ? stepTwist.logValue(input) : undefined;
          lineEnds.forEach((p, i) => {
            const v = values ? values[i] : 0;
            p.logW += v - p.logPsi;
            p.logPsi = v;
            p.waiting = true;
          });
        }
      } else if (!alive.length) {
        state.dispose();
      }

      // 3. At a step's end (every token at token level; when no particle is mid-line at step level):
      // record, then resample if the weights have degenerated.
      const stepEnds = o.level === "token" || ps.every((p) => p.finish || p.waiting);
      if (!stepEnds) continue;
      const logW = ps.map((p) => p.logW);
      const e = effectiveSampleSize(logW);
      ess.push(e);
      const allDead = logW.every((w) => w === -Infinity);
      if (allDead) collapsed = `every particle's weight is zero after step ${steps}: no particle reached a solution the final potential accepts`;
      const shouldResample = !allDead && ps.some((p) => !p.finish) &&
        (o.resample === "always" || (o.resample === "adaptive" && e < o.essThreshold * K));
      if (o.onStep) o.onStep(makeRecord(steps, o, ps, parents, e, shouldResample));
      parents = ps.map((_, i) => i);
      if (shouldResample) {
        const ancestors = o.clamp ? [0, ...resample("multinomial", normalize(logW), K - 1, rng)] : resample(o.resampling, normalize(logW), K, rng);
        const avg = logMeanExp(logW);
        const old = ps.map((p) => ({ ...p, tokens: p.tokens }));
        ancestors.forEach((a, i) => {
          const src = old[a];
          Object.assign(ps[i], { ...src, tokens: src.tokens.slice(), confidence: src.confidence.copy(), logW: avg });
        });
        parents = ancestors;
        resampledAt.push(steps);
      }
      for (const p of ps) p.waiting = false;
      steps++;
    }
  } finally {
    for (const out of outputs) out.release();
    state.dispose();
  }
  const logW = ps.map((p) => p.logW);
  return {
    particles: ps.map((p) => ({ tokens: p.tokens, logWeight: p.logW, finishReason: p.finish })),
    logZ: logMeanExp(logW),
    ess,
    resampledAt,
    steps,
    forwardPasses,
    generatedTokens: generated,
    drawnInGraph,
    collapsed,
  };
}

function makeRecord(step: number, o: SmcOptions, ps: Particle[], parents: number[], ess: number, resampled: boolean): SmcStepRecord {
  const particles = ps.map((p, i) => {
    const before = o.decode(p.tokens.slice(0, p.recorded));
    const text = p.recorded === p.tokens.length ? "" : o.decode(p.tokens).slice(before.length);
    p.recorded = p.tokens.length;
    return { parent: parents[i], text, logWeight: encodeLogWeight(p.logW), finished: p.finish !== null };
  });
  return { step, kind: o.level === "token" ? "token" : "line", particles, ess, resampled };
}
