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
import { CausalLM } from "../lm/causalLm";
import { Rng } from "../util/rng";
import type { Level } from "../../protocol/protocol";
import { SmcStepRecord } from "../../protocol/record";
import { ParticleBatch } from "./particleBatch";
import { endStep } from "./stepEnd";
import { initialParticles, Particle } from "./particles";
import { ResamplingScheme } from "./resampling";
import { readHiddenRows } from "./modelDraws";
import { Proposal, TokenSources } from "./tokenSources";
import { CONFIDENCE_FEATURES, StepTwist, Twist, TwistInput } from "./twist";
import { logMeanExp } from "./weights";

export type SmcLevel = Level;
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
  /** The tokenizer's side: where a solution ends, where a reasoning line ends, and the text. */
  text: TokenText;
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

/** What the loop needs of a tokenizer (a TextTokenizer is one). */
export interface TokenText {
  isEos(token: number): boolean;
  /** Step level: whether a token ends a reasoning line. */
  isLineEnd(token: number): boolean;
  decode(tokens: readonly number[]): string;
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
  /** Requests to an inference server, when lines came from one (lineSmc.ts). */
  requests?: number;
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

export function validateSmcOptions(o: SmcOptions): void {
  if (!Number.isInteger(o.particles) || o.particles < 1) throw new RangeError(`particles must be a positive integer, got ${o.particles}`);
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 1) throw new RangeError(`maxTokens must be a positive integer, got ${o.maxTokens}`);
  if (!(o.temperature > 0) || !Number.isFinite(o.temperature))
    throw new RangeError(`temperature must be > 0 for SMC, got ${o.temperature}`);
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
  for (let s = 0; s < V; s++) if (o.text.isEos(s)) eosIds.push(s);
  const sources = new TokenSources(
    lm,
    { level: o.level, temperature: o.temperature, tokenTwist, known, wantsRows: o.onProposal !== undefined },
    rng,
    eosIds,
  );

  const first = await lm.prefill(prompt, sources.sampling(1));
  const ps = initialParticles(K, first);
  if (o.clamp) sources.clamp = { particle: ps[0], tokens: o.clamp };
  const batch = new ParticleBatch(lm, first.state, first);
  const ess: number[] = [];
  const resampledAt: number[] = [];
  let parents = ps.map((_, i) => i);
  let steps = 0,
    generated = 0,
    drawnInGraph = 0;
  let collapsed: string | undefined;

  // The hidden state is fetched (on a GPU: brought back) only for twists and listeners that read it.
  const twistReadsHidden = !(stepTwist?.textOnly ?? false);
  const twistInput = async (rows: Particle[], withHidden = twistReadsHidden): Promise<TwistInput> => {
    const confidence = new Float32Array(rows.length * CONFIDENCE_FEATURES);
    rows.forEach((p, i) => p.confidence.write(confidence, i * CONFIDENCE_FEATURES));
    return {
      hidden: withHidden
        ? await readHiddenRows(
            rows.map((p) => p.pending!),
            lm.hiddenSize,
          )
        : undefined,
      hiddenSize: lm.hiddenSize,
      prefixes: rows.map((p) => p.tokens),
      confidence,
      decode: (t) => o.text.decode(t),
    };
  };
  /** log φ of a particle that ends now; `estimate` is the twist's own guess when the answer is unknown. */
  const finalLogPhi = (p: Particle, estimate: number) => (known ? known(o.text.decode(p.tokens)) : estimate);
  const nan = (p: Particle, culprit: string) =>
    new Error(`NaN in ${culprit} at SMC step ${steps} (particle ${ps.indexOf(p)}, token ${p.tokens.length + 1}); the run was stopped`);

  try {
    while (ps.some((p) => !p.finish) && !collapsed) {
      if (o.signal?.aborted) throw new SmcCancelled();

      // 1. Propose: every alive particle that is not waiting at a line's end draws one token.
      const movers = ps.filter((p) => !p.finish && !p.waiting);
      const rows = o.onProposal
        ? { logProbs: new Float32Array(movers.length * V), eosLogPsi: new Float32Array(movers.length * eosIds.length) }
        : undefined;
      const proposals = await sources.propose(movers, twistInput, finalLogPhi, nan, rows);

      // 2. Reweight by the drawn tokens; a particle that ends takes its final potential.
      const fed = new Map<Particle, number>();
      const endsNow: Particle[] = [];
      movers.forEach((p, m) => {
        const r = proposals[m];
        if (r?.inGraph) drawnInGraph++;
        if (r) generated++;
        const outcome = extend(p, r, o, finalLogPhi);
        if (outcome === "ends") endsNow.push(p);
        else if (outcome === "fed") fed.set(p, p.tokens[p.tokens.length - 1]);
      });
      // Step level, answer unknown: a particle ending now takes the twist's value of its prefix as φ.
      if (endsNow.length) {
        const values = stepTwist ? stepTwist.logValue(await twistInput(endsNow)) : undefined;
        endsNow.forEach((p, i) => (p.logW += (values ? values[i] : 0) - p.logPsi));
      }
      if (o.onProposal && movers.length) {
        o.onProposal({
          step: steps,
          particles: movers.map((p) => ps.indexOf(p)),
          hidden: await readHiddenRows(
            movers.map((p) => p.pending!),
            lm.hiddenSize,
          ),
          logProbs: rows!.logProbs,
          eosTokens: eosIds,
          eosLogPsi: rows!.eosLogPsi,
        });
      }

      // 3. Advance: one batched forward pass over the alive particles (waiting ones are held); at step
      // level a line's end multiplies the weight by ψ(s_1:k)/ψ(s_1:k−1), read after the line.
      const alive = ps.filter((p) => !p.finish);
      if (alive.length && fed.size) {
        await batch.advance(alive, fed, sources.sampling(alive.length));
        const lineEnds = o.level === "step" ? [...fed].filter(([, token]) => o.text.isLineEnd(token)).map(([p]) => p) : [];
        batch.releaseUnreferenced(ps);
        if (lineEnds.length)
          await reweightAtLineEnds(
            lineEnds,
            stepTwist,
            o.onBoundary && ((info) => o.onBoundary!({ step: steps, particles: lineEnds.map((p) => ps.indexOf(p)), ...info })),
            (rows) => twistInput(rows, twistReadsHidden || o.onBoundary !== undefined),
          );
      }

      // 4. At a step's end (every token at token level; when no particle is mid-line at step level):
      // record, then resample if the weights have degenerated.
      if (o.level === "step" && !ps.every((p) => p.finish || p.waiting)) continue;
      const end = endStep(ps, parents, steps, o, rng);
      ess.push(end.ess);
      if (end.resampled) resampledAt.push(steps);
      parents = end.parents;
      collapsed = end.collapsed;
      for (const p of ps) p.waiting = false;
      steps++;
    }
  } finally {
    batch.dispose();
  }
  return {
    particles: ps.map((p) => ({ tokens: p.tokens, logWeight: p.logW, finishReason: p.finish })),
    logZ: logMeanExp(ps.map((p) => p.logW)),
    ess,
    resampledAt,
    steps,
    forwardPasses: batch.forwardPasses,
    generatedTokens: generated,
    drawnInGraph,
    collapsed,
  };
}

/**
 * A particle takes its drawn token. Token level: w ·= p·ψ_t / (ψ_{t−1}·q). Step level: w ·= p/q within a
 * line. EOS ends it: φ replaces ψ (step level with the answer unknown: "ends", the caller asks the
 * twist). Reaching maxTokens ends it too. Returns "fed" when the token goes into the next pass.
 */
function extend(
  p: Particle,
  proposal: Proposal | null,
  o: SmcOptions,
  finalLogPhi: (p: Particle, estimate: number) => number,
): "fed" | "ends" | "done" {
  const known = o.logFinalPotential;
  if (!proposal) {
    // Every continuation has zero twisted mass: this particle's weight is zero.
    p.logW = -Infinity;
    p.finish = "eos";
    return "done";
  }
  const { token, logP, logQ, logPsi, gap } = proposal.draw;
  if (o.level === "token") {
    p.logW += logP + logPsi - p.logPsi - logQ;
    p.logPsi = logPsi;
  } else {
    p.logW += logP - logQ;
  }
  if (o.text.isEos(token)) {
    p.finish = "eos";
    if (o.level === "step" && known) p.logW += known(o.text.decode(p.tokens)) - p.logPsi;
    else if (o.level === "step") return "ends";
    else if (!proposal.eosPhi.has(token) && known) p.logW += finalLogPhi(p, 0) - p.logPsi; // drawn despite negligible p(EOS)
    return "done";
  }
  // After the EOS check: an ending particle's value is of its prefix as it stood before the draw.
  p.confidence.add(gap);
  p.tokens.push(token);
  if (p.tokens.length >= o.maxTokens) {
    p.finish = "length";
    // The final potential replaces the twist; unknown answer: the twist's estimate, ratio 1.
    if (known) p.logW += known(o.text.decode(p.tokens)) - p.logPsi;
    return "done";
  }
  return "fed";
}

/** Step level: particles at a line's end gain ψ(s_1:k)/ψ(s_1:k−1) and wait for the others. */
async function reweightAtLineEnds(
  lineEnds: Particle[],
  twist: StepTwist | undefined,
  onBoundary: ((info: { hidden?: Float32Array; confidence?: Float32Array }) => void) | undefined,
  twistInput: (rows: Particle[]) => Promise<TwistInput>,
): Promise<void> {
  const input = await twistInput(lineEnds);
  onBoundary?.({ hidden: input.hidden, confidence: input.confidence });
  const values = twist ? twist.logValue(input) : undefined;
  lineEnds.forEach((p, i) => {
    const v = values ? values[i] : 0;
    p.logW += v - p.logPsi;
    p.logPsi = v;
    p.waiting = true;
  });
}
