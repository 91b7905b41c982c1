/**
 * How many digits the result of "a op b" has, learned by counting the lines of right samples (the
 * outcome-mined labels of train/lineLabels.ts): the digit twist needs it to know which column a digit
 * being written will stand in (results are written leading digit first). Nothing here computes a
 * result: a count per (operator, operand lengths, leading digits), backed off to (operator, operand
 * lengths) where that is unseen, smoothed so that no length the columns allow has weight zero.
 */
import type { ArithmeticLine } from "./arithmeticLines";

/** The lengths 1…columns of a result and their weights (index L − 1), for the digit twist. */
export interface ResultLengths {
  weights(line: ArithmeticLine, columns: number): number[];
}

/** Counts kept per key: lengths 1…MAX_LENGTH. */
const MAX_LENGTH = 8;
/** Pseudo-count spread over the lengths allowed, and the weight of the coarser key's estimate. */
const SMOOTHING = 0.05;
const BACKOFF = 1;

export interface ResultLengthCounts {
  fine: Record<string, number[]>;
  coarse: Record<string, number[]>;
}

export class ResultLengthTable implements ResultLengths {
  constructor(readonly counts: ResultLengthCounts = { fine: {}, coarse: {} }) {}

  private static keys(l: Pick<ArithmeticLine, "a" | "op" | "b">): [string, string] {
    const coarse = `${l.op}|${l.a.length}|${l.b.length}`;
    return [`${coarse}|${l.a[0]}|${l.b[0]}`, coarse];
  }

  /** Counts one line's result length (a right line: its result is what the expression is worth). */
  add(line: ArithmeticLine): void {
    if (line.c.length > MAX_LENGTH) return;
    for (const [key, table] of ResultLengthTable.keys(line).map((k, i) => [k, i ? this.counts.coarse : this.counts.fine] as const)) {
      const row = (table[key] ??= new Array(MAX_LENGTH).fill(0));
      row[line.c.length - 1]++;
    }
  }

  weights(line: ArithmeticLine, columns: number): number[] {
    const [fine, coarse] = ResultLengthTable.keys(line);
    const f = this.counts.fine[fine],
      c = this.counts.coarse[coarse];
    const cTotal = c ? c.reduce((a, b) => a + b, 0) : 0;
    return Array.from({ length: columns }, (_, i) => {
      const prior = cTotal ? c[i] / cTotal : 1 / columns;
      return (f?.[i] ?? 0) + BACKOFF * prior + SMOOTHING / columns;
    });
  }

  toJSON(): ResultLengthCounts {
    return this.counts;
  }

  static fromJSON(doc: unknown): ResultLengthTable {
    const d = doc as ResultLengthCounts;
    const ok = (t: unknown) =>
      typeof t === "object" &&
      t !== null &&
      Object.values(t).every((r) => Array.isArray(r) && r.length === MAX_LENGTH && r.every((x) => Number.isFinite(x) && x >= 0));
    if (!d || !ok(d.fine) || !ok(d.coarse)) throw new Error("result lengths: not a table of counts");
    return new ResultLengthTable({ fine: d.fine, coarse: d.coarse });
  }
}
