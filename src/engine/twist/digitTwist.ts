/**
 * The line verifier read token by token: a token-level twist that judges a line of arithmetic while it
 * is being written, so that a particle that slips on a digit of a result is down-weighted (and the
 * proposal q ∝ p·ψ steers away from the slip) at that digit, not at the end of its line.
 *
 * log ψ(prefix) = Σ over the finished lines of log σ(ℓ(line))   (the line verifier, lineVerifier.ts)
 *               + the line being written, read as it stands, where the number at its very end — the
 *                 result c of "a op b = c" being written — is read open:
 *                 log σ(max over the completions c′ of c of ℓ(a op b = c′)),
 * i.e. the verifier's estimate that the best way to finish this result would be right. The completions
 * are every continuation of c's digits up to the verifier's columns (c itself included). Nothing here
 * knows arithmetic: which completion scores best is the verifier's, learned from outcomes.
 *
 * ℓ is a sum over digit columns and c's digit j enters only column j (lineVerifier.ts), so the max over
 * completions is separable: one table of per-column contributions per expression "a op b" (45 verifier
 * calls), then a max per column, for each possible length of c.
 *
 * With a partial-result head (partialResults.ts, trained on lines cut after each digit of their result),
 * a result being written is read by the head instead: for each length L the result may end at, the head
 * judges c's digits standing where a result of length L has them, and L = |c| (the result ends here) is
 * the verifier's value of the line as written. The shipped verifier ranks a result's leading digits
 * little better than chance (it was trained on finished lines, whose slips are mostly low); the head
 * was trained on the leading digits themselves.
 *
 * Where it agrees with the line verifier exactly: after a line's end ("\n"), at EOS, and wherever no
 * number is open at the end of the line. So the token level and the step level tell one story, and φ
 * at EOS (the twist's estimate when the answer is unknown) is the step level's φ.
 *
 * Within a line, only the digit tokens are read open; any other token closes the number being written,
 * and its ψ is the line read as it stands (the verifier's value if the line ended there). This is a
 * deterministic function of the prefix and the token, so the incremental weights stay exact (SMC stores
 * each particle's ψ_{t−1}); at the next line end ψ is the verifier's again.
 *
 * Known limits (docs/token-twist.md): operands are not judged while they are written (a slip in copying
 * a number is invisible to the verifier); a result longer than the verifier's columns is not read
 * (the line verifier leaves such a line out, so this twist does too, at every digit past the columns).
 */
import type { TokenTwist, TwistInput } from "../smc/twist";
import { ArithmeticLine, arithmeticLines, BLANK, expressionKey } from "./arithmeticLines";
import { LineVerifier } from "./lineVerifier";
import type { PartialResultHead } from "./partialResults";
import type { ResultLengths } from "./resultLengths";

/** Entries kept in each of the twist's caches before it is cleared. */
const CACHE_KEPT = 16384;

function remember<V>(cache: Map<string, V>, key: string, make: () => V): V {
  let v = cache.get(key);
  if (v === undefined) {
    v = make();
    if (cache.size >= CACHE_KEPT) cache.clear();
    cache.set(key, v);
  }
  return v;
}

/** Per-column contributions of an expression "a op b": ℓ(a op b = c) = base + Σ_j delta[j][c_j]. */
interface ColumnTable {
  base: number;
  /** columns × 11: the change of ℓ when column j of c holds digit 0–9 (index 10, BLANK: 0). */
  delta: Float64Array;
  /** columns: max over the digits 0–9 of delta[j][·]. */
  best: Float64Array;
}

/** Values are cached per line and per expression: the verifier must not change while this twist is used. */
export class DigitTwist implements TokenTwist {
  readonly kind = "token";
  /** Each token's text, read once through the caller's decode. */
  private pieces?: string[];
  /** Tokens whose text holds a digit: the only ones read open. */
  private digitTokens: number[] = [];
  private readonly lineValues = new Map<string, number>();
  private readonly openValues = new Map<string, number>();
  private readonly tables = new Map<string, ColumnTable>();
  /** The two networks' column terms (lineVerifier.ts): candidate results share most of their columns. */
  private readonly verifierColumns = new Map<number, number>();
  private readonly partialColumns = new Map<number, number>();

  constructor(
    readonly verifier: LineVerifier,
    readonly vocabSize: number,
    /** How long a result of each expression is (learned, resultLengths.ts); without it, any length up to the columns. */
    readonly lengths?: ResultLengths,
    /** A head trained on partial results (partialResults.ts): with it, a result being written is read by the head, not by its best completion. */
    readonly partial?: PartialResultHead,
    /**
     * "open": a result being written is read as above. "atLineEnd": it is worth 1 until its line ends,
     * where the verifier reads it as the step level does (the known-answer twist, forKnownAnswer).
     */
    readonly resultsRead: "open" | "atLineEnd" = "open",
  ) {
    if (partial && partial.columns !== verifier.p.columns)
      throw new Error("digit twist: the partial-result head and the verifier read different columns");
    // The best completion is found column by column only when a result digit enters one column alone.
    if (!partial && verifier.p.below === 3)
      throw new Error("digit twist: a verifier that reads the result's digit below each column needs a partial-result head");
  }

  /**
   * The twist for a known answer (eval's log Ẑ bounds, solve --gold): read through the verifier's
   * known-answer twist, so every finished line is worth ε + (1 − ε)·(its value) (lineVerifier.ts,
   * knownAnswerFloor), and a result being written is read only at its line's end. Against the answer a
   * slip is often undone (hence the floor ε). Steering away from it at the digit made the particles
   * that slip anyway rare, and heavy once they come back to the answer: they kept the weight of those
   * that did not slip, then gained ψ's rise from its value after the slip to 1. Read at the line's end,
   * the slip costs the particle that made it and coming back restores it, as at the step level; the
   * log Ẑ sandwich narrows (docs/token-twist.md, "Seventeenth step"). The answer's own digits are still
   * read while written (knownAnswer.ts). Itself when already read so.
   */
  forKnownAnswer(): DigitTwist {
    const verifier = this.verifier.forKnownAnswer();
    if (verifier === this.verifier && this.resultsRead === "atLineEnd") return this;
    return new DigitTwist(verifier, this.vocabSize, this.lengths, this.partial, "atLineEnd");
  }

  logPsiNext(input: TwistInput): Float32Array {
    const decode = input.decode;
    if (!decode) throw new Error("the digit twist reads the text of each prefix: the caller must pass decode");
    const V = this.vocabSize;
    if (!this.pieces) {
      this.pieces = Array.from({ length: V }, (_, s) => decode([s]));
      this.digitTokens = this.pieces.flatMap((p, s) => (/\d/.test(p) ? [s] : []));
    }
    const out = new Float32Array(input.prefixes.length * V);
    input.prefixes.forEach((prefix, r) => {
      const text = decode(prefix);
      const cut = text.lastIndexOf("\n") + 1;
      const line = text.slice(cut);
      const finished = this.finishedValue(text.slice(0, cut));
      out.fill(finished + this.lineValue(line), r * V, (r + 1) * V);
      for (const s of this.digitTokens) out[r * V + s] = finished + this.openLineValue(line + this.pieces![s]);
    });
    return out;
  }

  /**
   * log ψ of a text as this twist reads it after the text's last token: the line verifier's value,
   * with the result being written at the end (if any) read open. (A text ending in "\n" reads closed.)
   */
  logValueOfText(text: string): number {
    const cut = text.lastIndexOf("\n") + 1;
    return this.finishedValue(text.slice(0, cut)) + this.openLineValue(text.slice(cut));
  }

  /** Σ over the lines of `text` (each ended by "\n") of their verifier values. */
  private finishedValue(text: string): number {
    let sum = 0;
    let start = 0;
    for (let end = text.indexOf("\n"); end >= 0; end = text.indexOf("\n", start)) {
      sum += this.lineValue(text.slice(start, end));
      start = end + 1;
    }
    return sum;
  }

  /** The line verifier's log ψ of one line (no "\n"), read as finished. */
  private lineValue(line: string): number {
    if (!line.includes("=")) return 0;
    return remember(this.lineValues, line, () => this.verifier.logValueOfText(line));
  }

  /** One line (no "\n") with the number at its end, if it is a result, read open. */
  private openLineValue(line: string): number {
    if (!line.includes("=")) return 0;
    const trailing = /(\d+)$/.exec(line);
    if (!trailing) return this.lineValue(line);
    return remember(this.openValues, line, () => {
      const lines = arithmeticLines(line);
      const last = lines[lines.length - 1];
      if (!last || last.c !== trailing[1]) return this.lineValue(line);
      let sum = 0;
      for (const l of lines.slice(0, -1)) {
        const enc = this.verifier.encodeLine(l);
        if (enc) sum += this.verifier.lineLogValue(this.verifier.lineLogit(enc, this.verifierColumns));
      }
      return this.resultsRead === "open" ? sum + this.openResultValue(last) : sum;
    });
  }

  /**
   * The value of a result being written, from the verifier's best completion c′ of each length L:
   * with a length model, log Σ_{L ≥ |c|} P(L | a op b, L ≥ |c|)·σ(max_{|c′| = L} ℓ(a op b = c′)); without
   * one, log σ(max over every completion up to the columns). 0 where the verifier does not read the line
   * (a number longer than its columns), as it would not.
   */
  openResultValue(line: ArithmeticLine): number {
    const D = this.verifier.p.columns;
    const k = line.c.length;
    const enc = this.verifier.encodeLine(line);
    if (!enc) return 0;
    if (this.partial) return this.partialResultValue(line, enc);
    const t = this.columnTable(line);
    const weights = this.lengths?.weights(line, D);
    let best = -Infinity,
      mass = 0,
      total = 0;
    for (let length = k; length <= D; length++) {
      let z = t.base;
      for (let j = 0; j < length; j++) z += j >= length - k ? t.delta[j * (BLANK + 1) + line.c.charCodeAt(length - 1 - j) - 48] : t.best[j];
      if (z > best) best = z;
      if (weights) {
        mass += weights[length - 1] * Math.exp(this.verifier.lineLogValue(z));
        total += weights[length - 1];
      }
    }
    return total > 0 ? Math.log(mass / total) : this.verifier.lineLogValue(best);
  }

  /**
   * With the partial-result head: log Σ_{L ≥ |c|} P(L | a op b, L ≥ |c|)·σ(z_L), where z_L is the head's
   * logit of c's digits standing where a result of length L has them, and z_{|c|} (the result ends here)
   * is the verifier's ℓ(a op b = c), as it is when the number closes. Without a length model every
   * length up to the columns weighs the same.
   */
  private partialResultValue(line: ArithmeticLine, enc: Int32Array): number {
    const D = this.verifier.p.columns;
    const k = line.c.length;
    const weights = this.lengths?.weights(line, D) ?? new Array<number>(D).fill(1);
    let mass = 0,
      total = 0;
    for (let length = k; length <= D; length++) {
      const z =
        length === k ? this.verifier.lineLogit(enc, this.verifierColumns) : this.partial!.logit({ line, length }, this.partialColumns)!;
      mass += weights[length - 1] * Math.exp(this.verifier.lineLogValue(z));
      total += weights[length - 1];
    }
    return Math.log(mass / total);
  }

  private columnTable(line: ArithmeticLine): ColumnTable {
    return remember(this.tables, expressionKey(line), () => {
      const D = this.verifier.p.columns;
      const enc = this.verifier.encodeLine({ ...line, c: "" })!;
      const base = this.verifier.lineLogit(enc, this.verifierColumns);
      const delta = new Float64Array(D * (BLANK + 1));
      const best = new Float64Array(D).fill(-Infinity);
      const at = 1 + 2 * D;
      for (let j = 0; j < D; j++) {
        for (let d = 0; d < 10; d++) {
          enc[at + j] = d;
          delta[j * (BLANK + 1) + d] = this.verifier.lineLogit(enc, this.verifierColumns) - base;
          best[j] = Math.max(best[j], delta[j * (BLANK + 1) + d]);
        }
        enc[at + j] = BLANK;
      }
      return { base, delta, best };
    });
  }
}
