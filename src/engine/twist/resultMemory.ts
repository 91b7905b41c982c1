/**
 * The results right samples wrote, remembered per expression, and how much a line's agreement with them
 * says: the part of the line verifier (lineVerifier.ts) that reads a line's operands whole.
 *
 * Why: the verifier reads a line column by column, which settles + and − (a column and the one below it
 * hold everything a digit depends on) but not × and ÷, whose result digits depend on every operand digit:
 * on the shipped model's samples of the test problems it tells a right 2-digit × 2-digit line from a
 * wrong one with an AUC of 0.74, a 3-digit ÷ 1-digit one with 0.83 (+ and −: 0.99–1.00). The synthetic problems reuse their × and ÷ expressions (three in
 * four of the test problems' × lines compute an expression that 4,600 training problems' lines computed),
 * so what right samples of other problems wrote for an expression is the best reading of it there is.
 *
 * The memory is mined from outcomes (train/lineLabels.ts: a line of a sample that reached the known
 * answer is right; expressions that right samples disagree on are dropped). It is no rule: a mined result
 * can be wrong (a right sample that slipped twice), and an expression not met adds nothing. How much a
 * digit that agrees or disagrees is worth is learned per operator from outcomes of held-out problems
 * (train/calibration.ts): ℓ(line) gains hit[op] for each result column that holds the remembered digit
 * and miss[op] for each that holds another (or a digit where the remembered result has none, or none where
 * it has one). A column not written yet (a partial result's PENDING) adds nothing, so the term is a sum
 * over columns, each reading its own digit — as the rest of ℓ — and the digit twist's readings of a
 * result being written stay what they were.
 */
import { ArithmeticLine, BLANK, DIGIT_CODES, encodeLine, fitsColumns, Operator, OPERATORS } from "./arithmeticLines";

export interface ResultMemoryDocument {
  lines: string[];
  hit: number[];
  miss: number[];
}

/** A remembered line as a file writes it: "12*45=540". */
const LINE = /^(\d+)([-+*/])(\d+)=(\d+)$/;

/** The widest verifier a memory keys exactly: its operands' codes as one safe integer (12^13 < 2^53). */
const MAX_COLUMNS = 6;

export class ResultMemory {
  /** The operands' codes (operator, a's and b's columns) as one number → the result's columns. */
  private readonly results = new Map<number, Int32Array>();

  /**
   * @param lines the remembered lines, "a op b = c" each with the result right samples wrote for its
   *   expression (one per expression; lines a `columns`-wide verifier cannot read are left out)
   * @param hit per operator (OPERATORS order): ℓ's change for a result column that agrees
   * @param miss per operator: for one that disagrees
   */
  constructor(
    readonly columns: number,
    lines: readonly ArithmeticLine[],
    readonly hit: readonly number[] = new Array<number>(OPERATORS.length).fill(0),
    readonly miss: readonly number[] = new Array<number>(OPERATORS.length).fill(0),
  ) {
    if (!(Number.isInteger(columns) && columns >= 1 && columns <= MAX_COLUMNS))
      throw new Error(`result memory: columns must be 1–${MAX_COLUMNS}, got ${columns}`);
    if (hit.length !== OPERATORS.length || miss.length !== OPERATORS.length || ![...hit, ...miss].every(Number.isFinite))
      throw new Error(`result memory: hit and miss need ${OPERATORS.length} finite values each`);
    for (const line of lines) {
      if (!fitsColumns(line, columns)) continue;
      const enc = encodeLine(line, columns);
      const key = this.key(enc);
      if (this.results.has(key)) throw new Error(`result memory: the expression ${line.a} ${line.op} ${line.b} is remembered twice`);
      this.results.set(key, enc.slice(1 + 2 * columns));
    }
    this.lines = lines.filter((l) => fitsColumns(l, columns));
  }

  /** The remembered lines, as given (those the columns read). */
  readonly lines: readonly ArithmeticLine[];

  get size(): number {
    return this.results.size;
  }

  /** The same lines with other weights. */
  withWeights(hit: readonly number[], miss: readonly number[]): ResultMemory {
    return new ResultMemory(this.columns, this.lines, hit, miss);
  }

  /**
   * How an encoded line (encodeLine's layout, a partial result's PENDING columns allowed) agrees with the
   * remembered result of its expression: result columns that agree and that disagree; undefined where the
   * expression is not remembered. Columns blank in both say nothing.
   */
  agreement(enc: Int32Array): { hits: number; misses: number } | undefined {
    const remembered = this.results.get(this.key(enc));
    if (!remembered) return undefined;
    const D = this.columns;
    let hits = 0,
      misses = 0;
    for (let j = 0; j < D; j++) {
      const written = enc[1 + 2 * D + j];
      if (written > BLANK) continue; // PENDING: not written yet
      if (written === remembered[j]) {
        if (written !== BLANK) hits++;
      } else misses++;
    }
    return { hits, misses };
  }

  /** ℓ's memory term for an encoded line: hit[op]·agreeing + miss[op]·disagreeing columns (0 if not remembered). */
  term(enc: Int32Array): number {
    const a = this.agreement(enc);
    return a ? this.hit[enc[0]] * a.hits + this.miss[enc[0]] * a.misses : 0;
  }

  /** The memory as a twist file holds it (twistFile.ts): its lines as "a op b = c" without spaces, and its weights. */
  toDocument(): ResultMemoryDocument {
    return { lines: this.lines.map((l) => `${l.a}${l.op}${l.b}=${l.c}`), hit: [...this.hit], miss: [...this.miss] };
  }

  /** A memory from its document, for a verifier of `columns`; throws one line saying what is wrong. */
  static fromDocument(doc: unknown, columns: number): ResultMemory {
    const d = doc as Partial<ResultMemoryDocument> | null;
    if (!d || !Array.isArray(d.lines) || !Array.isArray(d.hit) || !Array.isArray(d.miss))
      throw new Error("the result memory needs lines, hit and miss");
    const lines = d.lines.map((text) => {
      const m = typeof text === "string" ? LINE.exec(text) : null;
      if (!m) throw new Error(`the result memory's line ${JSON.stringify(text)} is not "a op b=c"`);
      return { a: m[1], op: m[2] as Operator, b: m[3], c: m[4] };
    });
    return new ResultMemory(columns, lines, d.hit, d.miss);
  }

  private key(enc: Int32Array): number {
    let key = 0;
    for (let i = 0; i <= 2 * this.columns; i++) key = key * DIGIT_CODES + enc[i];
    return key;
  }
}
