/**
 * A learned head that judges a PARTIAL result: "a op b = c…" where only the leading digits of c are
 * written so far. The digit twist (digitTwist.ts) reads it while a result is being written, in place of
 * the line verifier's best completion: the verifier was trained on finished lines, whose slips sit
 * mostly in the low columns, and ranks a result's leading digits little better than chance — but
 * results are written leading digit first.
 *
 * Results are written leading digit first, so the column a written digit will stand in depends on the
 * length L the result will have. The head reads a partial result under one such L: its k written digits
 * stand in columns L − 1 … L − k, the columns below are PENDING (not written yet), those above BLANK.
 * The network is the line verifier's (lineVerifier.ts: one small network per digit column, over the
 * column's digits and the operands' column below, where a carry comes from), with its own parameters;
 * PENDING is the code NO_COLUMN, which never stands in a finished result's column, so the network's
 * entries for it are free to learn "not written yet".
 *
 * Nothing here knows arithmetic: what the head learns comes from cut lines labelled by outcomes
 * (train/partialResults.ts).
 */
import { ArithmeticLine, BLANK, digitColumns, NO_COLUMN, OPERATORS } from "./arithmeticLines";
import { LineVerifier } from "./lineVerifier";

/** The code of a result's column that is not written yet. */
export const PENDING = NO_COLUMN;

/** A partial result read under one length: `line.c` holds the digits written so far, leading first. */
export interface PartialResult {
  line: ArithmeticLine;
  /** The length the result is read to have (≥ its written digits). */
  length: number;
}

/**
 * The network's encoding of a partial result, [op, a columns, b columns, c columns] (units first) as
 * encodeLine's, or undefined where it does not fit the columns (the verifier would not read the line).
 */
export function encodePartial({ line, length }: PartialResult, columns: number): Int32Array | undefined {
  const k = line.c.length;
  if (line.a.length > columns || line.b.length > columns || length > columns || k > length || k < 1) return undefined;
  const c = Array.from({ length: columns }, (_, j) =>
    j >= length ? BLANK : j < length - k ? PENDING : line.c.charCodeAt(length - 1 - j) - 48,
  );
  return Int32Array.of(OPERATORS.indexOf(line.op), ...digitColumns(line.a, columns), ...digitColumns(line.b, columns), ...c);
}

export class PartialResultHead {
  constructor(readonly net: LineVerifier) {}

  get columns(): number {
    return this.net.p.columns;
  }

  /**
   * The logit of "the digits written so far, standing in the columns that `length` gives them, are the
   * right result's"; undefined where the partial result does not fit the columns. `memo`: as
   * LineVerifier.lineLogit's.
   */
  logit(partial: PartialResult, memo?: Map<number, number>): number | undefined {
    const enc = encodePartial(partial, this.columns);
    return enc && this.net.lineLogit(enc, memo);
  }

  /** A head that starts from a verifier's parameters (copied): finished digits read as the verifier reads them. */
  static fromVerifier(v: LineVerifier): PartialResultHead {
    // The head reads results being written; a final potential is not its business.
    return new PartialResultHead(v.withFinalPower(1));
  }
}
