/**
 * Twist-learning objectives as gradients of the head parameters, computed from one problem's samples
 * (samples.ts) under the current parameters.
 *
 * CTL (contrastive twist learning, Zhao et al. 2024, Eq. 8–9): minimise Σ_t KL(σ_t ‖ π_t^ψ), whose gradient is
 *     Σ_t E_{π_t^ψ}[∇ log ψ_t(s_1:t)] − E_{σ}[∇ log ψ_t(s_1:t)].
 * The positive expectation uses exact σ samples; the negative one the SMC particles. At token level the
 * expectation over the last token is exact, Σ_s q_t(s | s_<t)·∇ log ψ_t(s_<t, s), weighted by the particle's
 * normalised weight after step t. At step level the particles at each line boundary are used directly.
 *
 * BCE (value regression on rollouts, FUDGE-style, Yang & Klein 2021): σ(z) at every line boundary of a plain
 * sample predicts whether that sample ends correct.
 *
 * PRM (the line verifier, a process reward model): σ(ℓ) of every line with a mined label predicts that
 * label, binary cross-entropy.
 */
import { logSigmoid, TokenTwistHead, ValueTwistHead } from "../twist/heads";
import { TokenHeadGradient, ValueHeadGradient } from "../twist/gradients";
import { LineVerifier } from "../twist/lineVerifier";
import { encodeLine } from "../twist/arithmeticLines";
import { ProblemData } from "./samples";

export interface ObjectiveResult {
  grads: Float64Array[];
  /** The objective's value: the CTL surrogate (its gradient is the CTL gradient) or the mean BCE. */
  loss: number;
}

export function ctlTokenGradient(head: TokenTwistHead, data: ProblemData[]): ObjectiveResult {
  const grad = new TokenHeadGradient(head);
  const V = head.p.vocabSize, H = head.p.hiddenSize;
  let loss = 0;
  for (const d of data) {
    const neg = d.tokenNegatives!, pos = d.tokenPositives!;
    if (neg.n) {
      const psi = head.logPsiNext({ hidden: neg.hidden, hiddenSize: H, prefixes: Array.from({ length: neg.n }, () => []) });
      const E = neg.eosTokens.length;
      for (let r = 0; r < neg.n; r++) {
        const lq = new Float64Array(V);
        for (let s = 0; s < V; s++) lq[s] = neg.logProbs[r * V + s] + psi[r * V + s];
        neg.eosTokens.forEach((e, j) => (lq[e] = neg.logProbs[r * V + e] + neg.eosLogPsi[r * E + j]));
        let max = -Infinity;
        for (let s = 0; s < V; s++) if (lq[s] > max) max = lq[s];
        let sum = 0;
        for (let s = 0; s < V; s++) sum += lq[s] = Math.exp(lq[s] - max);
        const g = new Float64Array(V);
        for (let s = 0; s < V; s++) {
          g[s] = (neg.weights[r] * lq[s]) / sum;
          if (g[s] !== 0 && Number.isFinite(psi[r * V + s])) loss += g[s] * psi[r * V + s];
        }
        for (const e of neg.eosTokens) g[e] = 0; // φ, not the twist, stands there
        grad.add(neg.hidden, r * H, g);
      }
    }
    if (pos.n) {
      const psi = head.logPsiNext({ hidden: pos.hidden, hiddenSize: H, prefixes: Array.from({ length: pos.n }, () => []) });
      for (let r = 0; r < pos.n; r++) {
        grad.add(pos.hidden, r * H, -pos.coeff[r], pos.tokens[r]);
        loss -= pos.coeff[r] * psi[r * V + pos.tokens[r]];
      }
    }
  }
  return average(grad.grads, loss, data.length);
}

export function ctlStepGradient(head: ValueTwistHead, data: ProblemData[]): ObjectiveResult {
  const grad = new ValueHeadGradient(head);
  let loss = 0;
  for (const d of data) {
    for (const [rows, sign] of [[d.stepNegatives!, 1], [d.stepPositives!, -1]] as const) {
      for (let r = 0; r < rows.n; r++) {
        const c = sign * rows.coeff[r];
        grad.addLogPsi(rows.hidden, rows.confidence, r, c);
        loss += c * logSigmoid(grad.logit(rows.hidden, rows.confidence, r));
      }
    }
  }
  return average(grad.grads, loss, data.length);
}

export function bceStepGradient(head: ValueTwistHead, data: ProblemData[]): ObjectiveResult {
  const grad = new ValueHeadGradient(head);
  let loss = 0;
  let n = 0;
  for (const d of data) {
    const rows = d.labelled!;
    for (let r = 0; r < rows.n; r++) {
      const z = grad.logit(rows.hidden, rows.confidence, r);
      const y = rows.coeff[r];
      // −[y log σ(z) + (1 − y) log σ(−z)], with ∂/∂z = σ(z) − y.
      loss -= y * logSigmoid(z) + (1 - y) * logSigmoid(-z);
      grad.addLogit(rows.hidden, rows.confidence, r, Math.exp(logSigmoid(z)) - y);
      n++;
    }
  }
  return average(grad.grads, loss, Math.max(n, 1));
}

export function prmGradient(verifier: LineVerifier, data: ProblemData[]): ObjectiveResult {
  const grads = verifier.parameters().map((p) => new Float64Array(p.length));
  let loss = 0;
  let n = 0;
  for (const d of data) {
    for (const { line, label } of d.lines!) {
      const enc = encodeLine(line, verifier.p.columns);
      const z = verifier.lineLogit(enc);
      loss -= label * logSigmoid(z) + (1 - label) * logSigmoid(-z);
      verifier.addGradient(grads, enc, Math.exp(logSigmoid(z)) - label);
      n++;
    }
  }
  return average(grads, loss, Math.max(n, 1));
}

function average(grads: Float64Array[], loss: number, n: number): ObjectiveResult {
  for (const g of grads) for (let i = 0; i < g.length; i++) g[i] /= n;
  return { grads, loss: loss / n };
}
