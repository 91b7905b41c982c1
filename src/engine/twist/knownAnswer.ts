/**
 * A twist that reads the known answer a (eval's log Ẑ bounds, solve --gold, the exact-Z tests). When
 * the final potential is 1[answer = a], the twist to aim for is ψ(prefix) = P(the solution will answer a
 * | prefix), and the prefix says more about that than whether its lines hold:
 *
 * - Once a result equal to a is written (and closed), the model answers a: 99.7% of 16 plain samples
 *   of 200 validation problems that wrote a as a result answered a, and every right sample wrote it
 *   (docs/token-twist.md, "Sixteenth step"). Lines that did not hold before it no longer matter: ψ = 1.
 * - A line "x op y = …" is the one whose result is the answer with probability v = σ(ℓ(x op y = a)), the
 *   line verifier's own belief that a is that expression's result (learned from outcomes; nothing here
 *   computes x op y). While its result c is written, ψ = v·1[c is a's leading digits] + (1 − v)·ψ_ε, ψ_ε
 *   being the known-answer twist without a (each finished line floored, a result being written read at
 *   its line's end: DigitTwist.forKnownAnswer). At token level the proposal q ∝ p·ψ then steers the
 *   answer line's digits toward a's, and no other line's, and a particle's weight takes the model's
 *   probability of writing them in place of the 0 or 1 of where it happened to end.
 * - A line whose result closed on another number was not the answer line, or the solution is lost:
 *   each such line multiplies ψ by 1 − v.
 *
 * So log ψ_a = 0 once a is reached, else log ψ_ε + Σ over the closed lines log(1 − v), with the result
 * being written (token level) read as above. At every line end the token-level twist and the step-level
 * one read the same lines the same way, so the two levels tell one story, as without the answer. Every
 * value is a deterministic function of the prefix and the token, so SMC's weights stay exact.
 *
 * Only a whole number ≥ 0 is looked for among the results (the parser reads digits, never a sign or a
 * decimal point); for any other answer the twist is ψ_ε alone (knownAnswerTwist).
 */
import type { StepTwist, TokenTwist, TwistInput } from "../smc/twist";
import { ArithmeticLine, arithmeticLines, expressionKey } from "./arithmeticLines";
import type { DigitTwist } from "./digitTwist";
import { logSigmoid } from "./heads";
import type { LineVerifier } from "./lineVerifier";

/** Entries kept in each cache before it is cleared. */
const CACHE_KEPT = 16384;

/** What the answer says of some closed lines: reached, or log Π (1 − v) over them. */
interface Closed {
  reached: boolean;
  logNotAnswer: number;
}

const NOTHING_READ: Closed = { reached: false, logNotAnswer: 0 };

/** The answer's digits when it is a whole number ≥ 0 (what a result can be written as), else undefined. */
export function answerDigits(answer: number): string | undefined {
  return Number.isSafeInteger(answer) && answer >= 0 ? String(answer) : undefined;
}

/** Reads texts against the answer's digits with a line verifier's v; caches per expression and per text. */
export class AnswerReader {
  /** ℓ(x op y = a) per expression. */
  private readonly logits = new Map<string, number>();
  private readonly closed = new Map<string, Closed>();

  constructor(
    readonly verifier: LineVerifier,
    readonly digits: string,
  ) {}

  /** log(1 − v) and log v of a line's expression: v = σ(ℓ(x op y = a)); v = 0 where a does not fit the verifier's columns. */
  answerLine(line: ArithmeticLine): { logV: number; logNotV: number } {
    const key = expressionKey(line);
    let logit = this.logits.get(key);
    if (logit === undefined) {
      const enc = this.verifier.encodeLine({ ...line, c: this.digits });
      logit = enc ? this.verifier.lineLogit(enc) : -Infinity;
      if (this.logits.size >= CACHE_KEPT) this.logits.clear();
      this.logits.set(key, logit);
    }
    return { logV: logSigmoid(logit), logNotV: logSigmoid(-logit) };
  }

  /** The lines of a text, each result closed (a text cut inside a number reads it closed too); remembered per text. */
  readClosed(text: string): Closed {
    let c = this.closed.get(text);
    if (!c) {
      c = this.readClosedLine(NOTHING_READ, text);
      if (this.closed.size >= CACHE_KEPT) this.closed.clear();
      this.closed.set(text, c);
    }
    return c;
  }

  /** `before` and the lines of `text` after it, every result closed. */
  readClosedLine(before: Closed, text: string): Closed {
    if (before.reached) return before;
    let logNotAnswer = before.logNotAnswer;
    for (const l of arithmeticLines(text)) {
      if (l.c === this.digits) return { reached: true, logNotAnswer: 0 };
      logNotAnswer += this.answerLine(l).logNotV;
    }
    return { reached: false, logNotAnswer };
  }

  /**
   * log ψ_a after closed lines read as `before` and a text written since (its last line ending in a
   * digit), given log ψ_ε of the whole prefix: the number at the end, if it is the result of its line's
   * last arithmetic line, is read open (its digits may go on); every other number is closed.
   */
  readOpen(before: Closed, text: string, logPsiEpsilon: number): number {
    const cut = text.lastIndexOf("\n") + 1;
    const closedBefore = cut > 0 ? this.readClosedLine(before, text.slice(0, cut)) : before;
    if (closedBefore.reached) return 0;
    const line = text.slice(cut);
    const lines = arithmeticLines(line);
    const last = lines[lines.length - 1];
    const trailing = /(\d+)$/.exec(line);
    if (!last || !trailing || last.c !== trailing[1]) {
      const closed = this.readClosedLine(closedBefore, line);
      return closed.reached ? 0 : logPsiEpsilon + closed.logNotAnswer;
    }
    const closed = this.readClosedLine(closedBefore, line.slice(0, line.length - trailing[1].length));
    if (closed.reached) return 0;
    const { logV, logNotV } = this.answerLine(last);
    const other = logNotV + closed.logNotAnswer + logPsiEpsilon;
    return this.digits.startsWith(last.c) ? logAddExp(logV, other) : other;
  }
}

function logAddExp(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  const m = Math.max(a, b);
  return m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}

/** The digit twist (its known-answer reading, ψ_ε) reading the answer too: see the module's comment. */
export class KnownAnswerDigitTwist implements TokenTwist {
  readonly kind = "token";
  private readonly reader: AnswerReader;
  private pieces?: string[];
  private digitTokens: number[] = [];
  private isDigit: boolean[] = [];

  constructor(
    readonly base: DigitTwist,
    readonly digits: string,
  ) {
    this.reader = new AnswerReader(base.verifier, digits);
  }

  logPsiNext(input: TwistInput): Float32Array {
    const decode = input.decode;
    if (!decode) throw new Error("the known-answer twist reads the text of each prefix: the caller must pass decode");
    const out = this.base.logPsiNext(input);
    const V = this.base.vocabSize;
    if (!this.pieces) {
      this.pieces = Array.from({ length: V }, (_, s) => decode([s]));
      this.isDigit = this.pieces.map((p) => /\d/.test(p));
      this.digitTokens = this.pieces.flatMap((_, s) => (this.isDigit[s] ? [s] : []));
    }
    input.prefixes.forEach((prefix, r) => {
      const text = decode(prefix);
      const cut = text.lastIndexOf("\n") + 1;
      const before = this.reader.readClosed(text.slice(0, cut));
      if (before.reached) {
        out.fill(0, r * V, (r + 1) * V);
        return;
      }
      const line = text.slice(cut);
      for (const s of this.digitTokens) out[r * V + s] = this.reader.readOpen(before, line + this.pieces![s], out[r * V + s]);
      // Every other token gets the digit twist's value of the line as it stands, read closed (the digit
      // twist does not read such a token's text either), and the answer reads that line closed too.
      const closed = this.reader.readClosedLine(before, line);
      for (let s = 0; s < V; s++) if (!this.isDigit[s]) out[r * V + s] = closed.reached ? 0 : out[r * V + s] + closed.logNotAnswer;
    });
    return out;
  }
}

/** The line verifier (its known-answer reading, ψ_ε) reading the answer too, at line ends: see the module's comment. */
export class KnownAnswerLineTwist implements StepTwist {
  readonly kind = "step";
  readonly textOnly = true;
  private readonly reader: AnswerReader;

  constructor(
    readonly base: LineVerifier,
    readonly digits: string,
  ) {
    this.reader = new AnswerReader(base, digits);
  }

  logValue(input: TwistInput): Float64Array {
    const decode = input.decode;
    if (!decode) throw new Error("the known-answer twist reads the text of each prefix: the caller must pass decode");
    return Float64Array.from(input.prefixes, (prefix) => this.logValueOfText(decode(prefix)));
  }

  /** log ψ_a of a text, every line closed. */
  logValueOfText(text: string): number {
    const closed = this.reader.readClosed(text);
    return closed.reached ? 0 : this.base.logValueOfText(text) + closed.logNotAnswer;
  }
}
