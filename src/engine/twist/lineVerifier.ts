/**
 * A learned line verifier: a step-level twist (a process reward model, in the spirit of Feng et al.
 * 2025's learned value) that reads each finished "a op b = c" line of a prefix by its digit columns
 * and gives
 *     log ψ(prefix) = Σ_lines log σ(ℓ(line)),
 * i.e. the lines are independently right with probability σ(ℓ), and a prefix is worth continuing only
 * while all its lines are. Nearly every wrong answer of a small math model is one slipped line, which
 * the final hidden state does not show (measured: linear heads on it stayed at majority-vote accuracy).
 *
 * ℓ = bias_op + Σ_j s_j over the columns j (units first), with one small network shared by all columns:
 *     e_j = [T[op, a_j, b_j, c_j], Q[op, a_{j−1}, b_{j−1}], K[j]]   (learned embeddings)
 *     s_j = w2 · relu(W1ᵀ e_j + b1)
 * T sees the column's three digits together, Q the column below (where a carry or borrow comes from).
 * Nothing here knows arithmetic: which triples go together is learned from lines labelled by outcomes
 * (train/lineLabels.ts). A low-rank tensor model over the same columns learned markedly slower
 * (subtraction AUC 0.78 vs 0.89 after the same 475 updates).
 *
 * Initialisation: w2 = 0 and bias BIAS_INIT, so every line has the same σ(3) and ψ cancels from every
 * weight ratio at a step, as ψ ≡ 1 would.
 *
 * Which notations are read, and which are left out (a line left out adds nothing to log ψ, never a
 * penalty): arithmeticLines.ts and docs/line-verifier.md.
 */
import { Rng } from "../util/rng";
import { StepTwist, TwistInput } from "../smc/twist";
import {
  ArithmeticLine,
  arithmeticLines,
  DIGIT_CODES,
  encodedLength,
  encodeLine,
  fitsColumns,
  NO_COLUMN,
  OPERATORS,
} from "./arithmeticLines";
import { BIAS_INIT, logSigmoid } from "./heads";
import type { ResultMemory } from "./resultMemory";

const OPS = OPERATORS.length;
const TRIPLES = DIGIT_CODES ** 3;
/** Column terms a memo keeps before it starts over (a few MB). */
const MEMO_LIMIT = 1 << 18;

/** The shipped sizes: embedding width and hidden units. */
export const VERIFIER_EMBEDDING = 16;
export const VERIFIER_HIDDEN = 32;
/** The largest finalPower a verifier takes: beyond it φ^γ is an argmax over particles in all but name. */
export const MAX_FINAL_POWER = 16;

/** Whether `x` is a final power a verifier takes: a number in (0, MAX_FINAL_POWER]. */
export const isFinalPower = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x) && x > 0 && x <= MAX_FINAL_POWER;

/** Whether `x` is a known-answer floor a verifier takes: a number in (0, 1). */
export const isKnownAnswerFloor = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x) && x > 0 && x < 1;

export interface LineVerifierParams {
  /** Digit columns read per number (units first); higher digits are not seen. */
  columns: number;
  /** Embedding width d and hidden units. */
  embedding: number;
  hidden: number;
  /** ops × DIGIT_CODES³ × d: the column's digits (a_j, b_j, c_j). */
  T: Float32Array;
  /**
   * Digits read from the column below: 2, (a_{j−1}, b_{j−1}), as the first verifiers did (a file without
   * the field); 3 adds c_{j−1}, which settles whether a carry or borrow came in.
   */
  below?: 2 | 3;
  /** ops × DIGIT_CODES^below × d: the column below. */
  Q: Float32Array;
  /** columns × d: which column. */
  K: Float32Array;
  /** 3d × hidden, row-major; hidden; hidden. */
  W1: Float32Array;
  b1: Float32Array;
  w2: Float32Array;
  /** ops: each operator's bias. */
  bias: Float32Array;
  /**
   * What right samples wrote for the expressions met in training, and what agreeing with it is worth
   * (resultMemory.ts): set after training from outcomes, never by gradient. Without it ℓ is the columns' alone.
   */
  memory?: ResultMemory;
  /**
   * γ: when the answer is unknown, a finished solution's final potential is φ^γ (finalLogValue), not φ.
   * φ says how often a solution like this one is right, and is soft because this model often reaches
   * the right answer through a line that does not hold; the posterior over answers with γ = 2 picks the
   * right answer more often and is better calibrated (docs/token-twist.md, "Twelfth step"). Chosen after
   * training, per run, by how well calibrated SMC's posterior is on held-out problems (train/finalPower.ts),
   * never by gradient; absent means 1. The twist inside a solution is φ either way.
   */
  finalPower?: number;
  /**
   * ε: when the answer is known (eval's log Ẑ bounds, solve --gold), each line is worth ε + (1 − ε)·σ(ℓ)
   * (forKnownAnswer), not σ(ℓ). Against the answer itself a line that does not hold is not the end: this
   * model lands back on the right value after some of its slips (8.7% of them still end right), and a
   * twist that rates them near 0 gives those right answers huge weights, rarely. Fitted after training
   * to outcomes (calibration.ts, fitKnownAnswerFloor), never by gradient; absent means none. When the
   * answer is unknown the final potential is φ^γ, which a slip lowers for good, and the twist stays Π σ(ℓ).
   */
  knownAnswerFloor?: number;
}

type ParamName = "T" | "Q" | "K" | "W1" | "b1" | "w2" | "bias";
const PARAM_NAMES: readonly ParamName[] = ["T", "Q", "K", "W1", "b1", "w2", "bias"];

export class LineVerifier implements StepTwist {
  readonly kind = "step";
  readonly textOnly = true;

  constructor(readonly p: LineVerifierParams) {
    if (!(p.columns >= 1 && p.embedding >= 1 && p.hidden >= 1)) throw new Error("line verifier: columns, embedding and hidden must be ≥ 1");
    if (p.below !== undefined && p.below !== 2 && p.below !== 3) throw new Error(`line verifier: below must be 2 or 3, got ${p.below}`);
    const sizes = LineVerifier.sizes(p.columns, p.embedding, p.hidden, p.below);
    this.belowCodes = DIGIT_CODES ** (p.below ?? 2);
    this.qRows = OPS * this.belowCodes;
    for (const name of PARAM_NAMES)
      if (p[name].length !== sizes[name])
        throw new Error(`line verifier: parameter ${name} has ${p[name].length} values, expected ${sizes[name]}`);
    if (p.finalPower !== undefined && !isFinalPower(p.finalPower))
      throw new Error(`line verifier: finalPower must be a number in (0, ${MAX_FINAL_POWER}], got ${p.finalPower}`);
    if (p.knownAnswerFloor !== undefined && !isKnownAnswerFloor(p.knownAnswerFloor))
      throw new Error(`line verifier: knownAnswerFloor must be a number in (0, 1), got ${p.knownAnswerFloor}`);
    if (p.memory && p.memory.columns !== p.columns)
      throw new Error(`line verifier: its result memory reads ${p.memory.columns} columns, the verifier ${p.columns}`);
  }

  static readonly paramNames = PARAM_NAMES;

  /** Rows of Q per operator (the codes of the digits read from the column below), and in all. */
  private readonly belowCodes: number;
  private readonly qRows: number;

  /** Number of values of each parameter. */
  static sizes(columns: number, d: number, hidden: number, below: 2 | 3 = 2): Record<ParamName, number> {
    return {
      T: OPS * TRIPLES * d,
      Q: OPS * DIGIT_CODES ** below * d,
      K: columns * d,
      W1: 3 * d * hidden,
      b1: hidden,
      w2: hidden,
      bias: OPS,
    };
  }

  static init(columns: number, rng: Rng, d = VERIFIER_EMBEDDING, hidden = VERIFIER_HIDDEN, below: 2 | 3 = 2): LineVerifier {
    const normal = (n: number, scale: number) => Float32Array.from({ length: n }, () => scale * rng.normal());
    const sizes = LineVerifier.sizes(columns, d, hidden, below);
    return new LineVerifier({
      columns,
      ...(below === 3 && { below }),
      embedding: d,
      hidden,
      T: normal(sizes.T, 0.1),
      Q: normal(sizes.Q, 0.1),
      K: normal(sizes.K, 0.1),
      W1: normal(sizes.W1, 1 / Math.sqrt(3 * d)),
      b1: new Float32Array(hidden),
      w2: new Float32Array(hidden),
      bias: new Float32Array(OPS).fill(BIAS_INIT),
    });
  }

  /** A verifier with copies of these parameters (training the copy leaves this one as it is); the memory, never changed, is shared. */
  copy(): LineVerifier {
    const p = this.p;
    return new LineVerifier({ ...p, ...Object.fromEntries(PARAM_NAMES.map((n) => [n, Float32Array.from(p[n])])) });
  }

  /** A copy that reads `memory` (or none) besides its columns. */
  withMemory(memory: ResultMemory | undefined): LineVerifier {
    const { memory: _, ...p } = this.copy().p;
    return new LineVerifier(memory ? { ...p, memory } : p);
  }

  /** A copy whose final potential, when the answer is unknown, is φ^power (1: φ itself). */
  withFinalPower(power: number): LineVerifier {
    const { finalPower: _, ...p } = this.copy().p;
    return new LineVerifier(power === 1 ? p : { ...p, finalPower: power });
  }

  /** A copy whose lines, when the answer is known, are worth floor + (1 − floor)·σ(ℓ) (0: σ(ℓ) itself). */
  withKnownAnswerFloor(floor: number): LineVerifier {
    const { knownAnswerFloor: _, ...p } = this.copy().p;
    return new LineVerifier(floor === 0 ? p : { ...p, knownAnswerFloor: floor });
  }

  /**
   * The twist for a known answer: this verifier with each line worth ε + (1 − ε)·σ(ℓ), ε its
   * knownAnswerFloor (see there); itself when it has none. It shares these parameters.
   */
  forKnownAnswer(): LineVerifier {
    const floor = this.p.knownAnswerFloor;
    if (floor === undefined || this.floor === floor) return this;
    const twist = new LineVerifier(this.p);
    twist.floor = floor;
    return twist;
  }

  /** The floor a line's value is read with: 0 but in a known-answer twist (forKnownAnswer). */
  private floor = 0;

  /** log of a line's value from its logit ℓ: log σ(ℓ), or in a known-answer twist log(ε + (1 − ε)·σ(ℓ)). */
  lineLogValue(logit: number): number {
    return this.floor === 0 ? logSigmoid(logit) : Math.log(this.floor + (1 - this.floor) / (1 + Math.exp(-logit)));
  }

  /** The trainable arrays, in a fixed order (the optimiser's and the gradient's). */
  parameters(): Float32Array[] {
    return PARAM_NAMES.map((n) => this.p[n]);
  }

  /**
   * Encodes a text's lines for this verifier. A line with a number longer than its columns is left out
   * (adds nothing to log ψ): cut to its low digits it would be another line, often a wrong one
   * ("9999 + 1 = 10000" would read "9999 + 1 = 0000"), and the verifier must never penalise a line it
   * cannot see. Lines it cannot parse at all are left out likewise (arithmeticLines).
   */
  encode(text: string): Int32Array[] {
    return arithmeticLines(text).flatMap((l) => this.encodeLine(l) ?? []);
  }

  /**
   * One parsed line's encoding, or undefined for a line this verifier cannot see (a number longer than
   * its columns): the one rule, for scoring (encode) and for training on labelled lines (objectives/prm.ts).
   */
  encodeLine(line: ArithmeticLine): Int32Array | undefined {
    return fitsColumns(line, this.p.columns) ? encodeLine(line, this.p.columns) : undefined;
  }

  /**
   * ℓ(line): the logit of "this line is right", a sum of one term per column (and the memory's, if any,
   * itself a sum over the result's columns; it is not remembered in `memo`). With `memo`, each column's
   * term is remembered under what the column reads (operator, its digits, the digits below, its place):
   * the lines a digit twist reads while a result is written share most of their columns. A memo is only
   * for parameters that no longer change (a twist in use, never one being trained).
   */
  lineLogit(line: Int32Array, memo?: Map<number, number>): number {
    const D = this.checkedColumns(line);
    let z = 0;
    for (let j = 0; j < D; j++) {
      const key = this.columnKey(line, j);
      if (!memo) {
        z += this.columnTerm(key);
        continue;
      }
      let term = memo.get(key);
      if (term === undefined) {
        if (memo.size >= MEMO_LIMIT) memo.clear();
        term = this.columnTerm(key);
        memo.set(key, term);
      }
      z += term;
    }
    return z + this.p.bias[line[0]] + (this.p.memory?.term(line) ?? 0);
  }

  /** The line's columns, once its length is checked. */
  private checkedColumns(line: Int32Array): number {
    const D = this.p.columns;
    if (line.length !== encodedLength(D))
      throw new Error(`line verifier: encoded line has ${line.length} codes, expected ${encodedLength(D)}`);
    return D;
  }

  /** What column j of a line reads, as one number: its row of T, its row of Q and its place. */
  private columnKey(line: Int32Array, j: number): number {
    const D = this.p.columns;
    const triple = line[0] * TRIPLES + (line[1 + j] * DIGIT_CODES + line[1 + D + j]) * DIGIT_CODES + line[1 + 2 * D + j];
    return (triple * this.qRows + this.belowRow(line, j)) * D + j;
  }

  /** A column key's offsets into T, Q and K (in a scratch array: no allocation per column). */
  private embeddingOffsets(key: number): Int32Array {
    const { columns: D, embedding: d } = this.p;
    const j = key % D;
    const rest = (key - j) / D;
    const q = rest % this.qRows;
    const out = this.offsets;
    out[0] = ((rest - q) / this.qRows) * d;
    out[1] = q * d;
    out[2] = j * d;
    return out;
  }

  private readonly offsets = new Int32Array(3);

  /**
   * Column j's row of Q: the operator and the digits of the column below it, (a_{j−1}, b_{j−1}) and with
   * `below` 3 also c_{j−1}; the units column reads "no column" in each.
   */
  private belowRow(line: Int32Array, j: number): number {
    const D = this.p.columns;
    const three = this.p.below === 3;
    let row: number;
    if (j === 0) row = three ? (NO_COLUMN * DIGIT_CODES + NO_COLUMN) * DIGIT_CODES + NO_COLUMN : NO_COLUMN * DIGIT_CODES + NO_COLUMN;
    else {
      row = line[j] * DIGIT_CODES + line[D + j];
      if (three) row = row * DIGIT_CODES + line[2 * D + j];
    }
    return line[0] * this.belowCodes + row;
  }

  /** The term w2·relu(b1 + W1ᵀ[T_t, Q_q, K_k]) of the column that reads what `key` says. */
  private columnTerm(key: number): number {
    const o = this.embeddingOffsets(key);
    const t = o[0],
      q = o[1],
      k = o[2];
    const { embedding: d, hidden: Hn, T, Q, K, W1, b1, w2 } = this.p;
    const h = (this.scratch ??= new Float64Array(Hn));
    h.set(b1);
    for (let i = 0; i < 3 * d; i++) {
      const x = i < d ? T[t + i] : i < 2 * d ? Q[q + i - d] : K[k + i - 2 * d];
      for (let u = 0; u < Hn; u++) h[u] += x * W1[i * Hn + u];
    }
    let term = 0;
    for (let u = 0; u < Hn; u++) if (h[u] > 0) term += w2[u] * h[u];
    return term;
  }

  private scratch?: Float64Array;

  /**
   * Adds Σ_i g_i·∂ℓ(line_i)/∂θ to `grads` (parameters() order). ℓ is a sum of column terms, so the
   * coefficients are summed per distinct column first and each distinct column is back-propagated once:
   * a batch's lines and their one-digit contrasts share most of their columns.
   */
  addGradients(grads: Float64Array[], lines: readonly Int32Array[], g: readonly number[]): void {
    const dBias = grads[6];
    const columns = new Map<number, number>();
    lines.forEach((line, i) => {
      const D = this.checkedColumns(line);
      dBias[line[0]] += g[i];
      for (let j = 0; j < D; j++) {
        const key = this.columnKey(line, j);
        columns.set(key, (columns.get(key) ?? 0) + g[i]);
      }
    });
    for (const [key, gSum] of columns) this.backwardColumn(grads, key, gSum);
  }

  /** Adds g·∂(column term)/∂θ for the column that reads what `key` says (as columnTerm computes it). */
  private backwardColumn(grads: Float64Array[], key: number, g: number): void {
    const o = this.embeddingOffsets(key);
    const t = o[0],
      q = o[1],
      k = o[2];
    const { embedding: d, hidden: Hn, T, Q, K, W1, b1, w2 } = this.p;
    const [dT, dQ, dK, dW1, db1, dw2] = grads;
    const e = new Float64Array(3 * d);
    for (let i = 0; i < d; i++) {
      e[i] = T[t + i];
      e[d + i] = Q[q + i];
      e[2 * d + i] = K[k + i];
    }
    const h = Float64Array.from(b1);
    for (let i = 0; i < 3 * d; i++) {
      const x = e[i];
      for (let u = 0; u < Hn; u++) h[u] += x * W1[i * Hn + u];
    }
    const dh = new Float64Array(Hn);
    for (let u = 0; u < Hn; u++) {
      if (h[u] <= 0) continue;
      dw2[u] += g * h[u];
      dh[u] = g * w2[u];
      db1[u] += dh[u];
    }
    for (let i = 0; i < 3 * d; i++) {
      let de = 0;
      for (let u = 0; u < Hn; u++) {
        dW1[i * Hn + u] += e[i] * dh[u];
        de += W1[i * Hn + u] * dh[u];
      }
      if (i < d) dT[t + i] += de;
      else if (i < 2 * d) dQ[q + i - d] += de;
      else dK[k + i - 2 * d] += de;
    }
  }

  /** Adds g·∂ℓ(line)/∂θ to `grads` (parameters() order). */
  addGradient(grads: Float64Array[], line: Int32Array, g: number): void {
    this.addGradients(grads, [line], [g]);
  }

  /** log ψ of a text: Σ over its finished arithmetic lines of log σ(ℓ) (in a known-answer twist, of the floored values). */
  logValueOfText(text: string): number {
    return this.encode(text).reduce((s, line) => s + this.lineLogValue(this.lineLogit(line)), 0);
  }

  /** log of a finished text's final potential when its answer is unknown: γ·log φ (finalPower), never floored. */
  finalLogValue(text: string): number {
    return (this.p.finalPower ?? 1) * this.encode(text).reduce((s, line) => s + logSigmoid(this.lineLogit(line)), 0);
  }

  logValue(input: TwistInput): Float64Array {
    const decode = input.decode;
    if (!decode) throw new Error("the line verifier reads the text of each prefix: the caller must pass decode");
    return Float64Array.from(input.prefixes, (prefix) => this.logValueOfText(decode(prefix)));
  }
}
