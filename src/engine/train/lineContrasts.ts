/**
 * Finished lines for a line verifier that judges every column of a result: the lines labelled by
 * outcomes (lineLabels.ts), and contrasts from the mining's one assumption (one expression has one
 * value): the mined result with one digit changed, in any column, is wrong.
 *
 * Why: the shipped verifier was trained on the model's own slips, which sit mostly in a result's low
 * columns, so it ranks the leading digits little better than chance; and its value at a line's end is φ,
 * the potential both SMC levels weigh particles by (docs/token-twist.md: no proposal makes the weighted
 * vote prefer what φ does not). Training is trainPartialHead's: a finished line is a partial result with
 * every digit written.
 */
import { mineLineLabels, minedResults } from "./lineLabels";
import type { CutLine } from "./partialResults";

/**
 * One problem's samples as finished lines: the labelled ones (weight 1) and, per mined result, every
 * one-digit change of it (no leading zero), labelled wrong, with `contrastWeight` spread over them.
 */
export function finishedLineExamples(texts: readonly string[], correct: readonly boolean[], contrastWeight: number): CutLine[] {
  const labelled = mineLineLabels(texts, correct);
  const out: CutLine[] = labelled.map(({ line, label }) => ({ line, length: line.c.length, label, weight: 1 }));
  if (contrastWeight > 0)
    for (const { line, right } of minedResults(labelled).values()) {
      const wrong: string[] = [];
      for (let i = 0; i < right.length; i++)
        for (let d = 0; d < 10; d++)
          if (String(d) !== right[i] && !(i === 0 && d === 0 && right.length > 1)) wrong.push(right.slice(0, i) + d + right.slice(i + 1));
      for (const c of wrong) out.push({ line: { ...line, c }, length: c.length, label: 0, weight: contrastWeight / wrong.length });
    }
  return out;
}
