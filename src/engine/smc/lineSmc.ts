/**
 * Step-level twisted SMC (Feng et al., ICLR 2025) over a model that is only asked for whole lines: an
 * inference server (remote/remoteModel.ts) proposes the next reasoning line of every particle, the
 * twist reads the text, weights are ratios of ψ and resampling copies token lists. Nothing of the model
 * is held here, so the same loop steers a 70B model on a cluster.
 *
 * Target σ(s) ∝ p(s)·φ(s); intermediate targets π_k(s_1:k) ∝ p(s_1:k)·ψ(s_1:k) at line boundaries.
 * Proposal: the model's own next line, s_k ~ p(· | s_1:k−1) at temperature 1, so the within-line weight
 * p/q is 1 and the incremental weight at a boundary is (Feng et al., Eq. 7)
 *     w_k = ψ(s_1:k) / ψ(s_1:k−1),
 * and at the end φ(s) / ψ(s_1:k−1), φ the known-answer reward or, unknown, the twist's value of the
 * finished text. A temperature ≠ 1 would need p/q per token, and q's normaliser over the vocabulary is
 * something no completions API returns: it is refused rather than silently mis-weighted.
 *
 * This is the local loop's step level (twistedSmc.ts) with a line drawn per step instead of a token per
 * pass; the records, ESS, resampling and log Ẑ are the same, so the panel and the vote do not know the
 * difference.
 */
import { Rng } from "../util/rng";
import { Particle } from "./particles";
import { ConfidenceTracker, StepTwist } from "./twist";
import { endStep } from "./stepEnd";
import { SmcCancelled, SmcOptions, SmcRunResult } from "./twistedSmc";
import { logMeanExp } from "./weights";

/** How a proposed line ended: at the line's end (its tokens include the line break), the model's EOS (not in its tokens), or the token budget. */
export type LineEnd = "line" | "eos" | "length";

export interface ProposedLine {
  tokens: number[];
  ends: LineEnd;
}

/** Where lines come from: the next line of each prefix, drawn from the model at temperature 1. */
export interface LineProposer {
  /**
   * The next line of each `prefixes[i]` (prompt and generated tokens), at most `maxTokens` tokens each.
   * Returns the lines in order and the number of requests they took.
   */
  proposeLines(
    prefixes: readonly (readonly number[])[],
    maxTokens: number,
    signal?: AbortSignal,
  ): Promise<{ lines: ProposedLine[]; requests: number }>;
}

/** The SMC settings a line proposer can honour: step level, a twist that reads text, no clamp. */
export type LineSmcOptions = Omit<SmcOptions, "onProposal" | "onBoundary">;

/**
 * Why these options cannot run over lines from a server, in one line for the user, or undefined. What
 * needs the model's internals is refused, never silently changed.
 */
export function lineSmcRefusal(o: Pick<SmcOptions, "level" | "twist" | "temperature" | "clamp">): string | undefined {
  if (o.level !== "step")
    return "token-level SMC needs the model's next-token distribution at every token, which a completions server does not return: use --level step";
  if (o.twist && (o.twist.kind !== "step" || !o.twist.textOnly))
    return "this twist reads the model's hidden states, which a completions server does not return: use a twist that reads text (the line verifier, --objective prm) or --twist none";
  if (o.temperature !== 1)
    return "on a server the proposal is the model's own line at temperature 1 (the importance weights of another temperature need the whole vocabulary's probabilities): use --temperature 1";
  if (o.clamp)
    return "conditional SMC (the upper bound on log Z) needs the model's probabilities of a given solution: run it on the local backend";
  return undefined;
}

export async function runLineSmc(proposer: LineProposer, prompt: readonly number[], o: LineSmcOptions): Promise<SmcRunResult> {
  const refusal = lineSmcRefusal(o);
  if (refusal) throw new RangeError(refusal);
  if (!Number.isInteger(o.particles) || o.particles < 1) throw new RangeError(`particles must be a positive integer, got ${o.particles}`);
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 1) throw new RangeError(`maxTokens must be a positive integer, got ${o.maxTokens}`);
  const rng = new Rng(o.seed);
  const K = o.particles;
  const twist = o.twist as StepTwist | undefined;
  const known = o.logFinalPotential;
  const ps: Particle[] = Array.from({ length: K }, () => newParticle());
  const ess: number[] = [];
  const resampledAt: number[] = [];
  let parents = ps.map((_, i) => i);
  let steps = 0,
    requests = 0,
    generated = 0;
  let collapsed: string | undefined;

  /** log ψ of each prefix: the twist's value, or 0 (ψ ≡ 1) without one. */
  const logPsi = (rows: Particle[]): ArrayLike<number> =>
    twist
      ? twist.logValue({ hiddenSize: 0, prefixes: rows.map((p) => p.tokens), decode: (t) => o.text.decode(t) })
      : new Float64Array(rows.length);

  while (ps.some((p) => !p.finish) && !collapsed) {
    if (o.signal?.aborted) throw new SmcCancelled();

    // 1. Propose: the next line of every alive particle, in as few requests as the server allows.
    const alive = ps.filter((p) => !p.finish);
    const budget = Math.max(...alive.map((p) => o.maxTokens - p.tokens.length));
    let proposed: Awaited<ReturnType<LineProposer["proposeLines"]>>;
    try {
      proposed = await proposer.proposeLines(
        alive.map((p) => [...prompt, ...p.tokens]),
        budget,
        o.signal,
      );
    } catch (e) {
      if (o.signal?.aborted) throw new SmcCancelled();
      throw e;
    }
    requests += proposed.requests;

    // 2. Extend: a particle takes its line (cut at its own budget: a prefix of a sample is a sample).
    const atLineEnd: Particle[] = [];
    const endsByEos: Particle[] = [];
    alive.forEach((p, i) => {
      const line = proposed.lines[i];
      const room = o.maxTokens - p.tokens.length;
      const taken = line.tokens.slice(0, room);
      p.tokens.push(...taken);
      // The EOS is a draw too: it counts only where the budget had room left for it, as in the local loop.
      const eos = line.ends === "eos" && line.tokens.length < room;
      generated += taken.length + (eos ? 1 : 0);
      if (eos) {
        p.finish = "eos";
        endsByEos.push(p);
      } else if (p.tokens.length >= o.maxTokens || line.ends === "length") {
        // Cut by the budget: φ replaces ψ when the answer is known; unknown, the ratio is 1.
        p.finish = "length";
        if (known) p.logW += known(o.text.decode(p.tokens)) - p.logPsi;
      } else atLineEnd.push(p);
    });

    // 3. Reweight: at a line's end w ·= ψ(s_1:k)/ψ(s_1:k−1); at the EOS w ·= φ(s)/ψ(s_1:k−1), φ the
    // reward when the answer is known, else the twist's value of the finished text.
    if (atLineEnd.length) {
      const values = logPsi(atLineEnd);
      atLineEnd.forEach((p, i) => {
        p.logW += values[i] - p.logPsi;
        p.logPsi = values[i];
      });
    }
    if (endsByEos.length) {
      const values = known ? endsByEos.map((p) => known(o.text.decode(p.tokens))) : logPsi(endsByEos);
      endsByEos.forEach((p, i) => (p.logW += values[i] - p.logPsi));
    }

    // 4. Record, then resample if the weights have degenerated.
    const end = endStep(ps, parents, steps, o, rng);
    ess.push(end.ess);
    if (end.resampled) resampledAt.push(steps);
    parents = end.parents;
    collapsed = end.collapsed;
    steps++;
  }
  return {
    particles: ps.map((p) => ({ tokens: p.tokens, logWeight: p.logW, finishReason: p.finish })),
    logZ: logMeanExp(ps.map((p) => p.logW)),
    ess,
    resampledAt,
    steps,
    forwardPasses: 0,
    requests,
    generatedTokens: generated,
    drawnInGraph: 0,
    collapsed,
  };
}

function newParticle(): Particle {
  return {
    tokens: [],
    logW: 0,
    logPsi: 0,
    finish: null,
    stateRow: 0,
    pending: null,
    waiting: false,
    recorded: 0,
    confidence: new ConfidenceTracker(),
  };
}
