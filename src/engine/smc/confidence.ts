/**
 * How sure a run is of its answer, in words: a tie is said to be a tie, a low posterior is marked, and
 * a problem outside the model's domain says the answer is a guess. The CLI, the inserted line and the
 * panel all show this one summary, so nothing presents an answer more confidently than its posterior.
 */
import type { AnswerConfidence } from "../../protocol/protocol";
import type { AnswerProbability } from "../../protocol/record";

/** Below this posterior the chosen answer is marked uncertain. */
export const UNCERTAIN_BELOW = 0.5;
/** Answers whose probabilities differ by less than this share the top place. */
const TIE_TOLERANCE = 1e-6;

const pct = (p: number) => `${(100 * p).toFixed(1)}%`;

/** "a", "a or b", "a, b or c". */
function orList(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? "") : `${items.slice(0, -1).join(", ")} or ${items[items.length - 1]}`;
}

export function describeConfidence(posterior: readonly AnswerProbability[], outOfDepth?: string): AnswerConfidence {
  const withDepth = (c: AnswerConfidence): AnswerConfidence => (outOfDepth ? { ...c, outOfDepth } : c);
  const top = posterior[0];
  if (!top) return withDepth({ kind: "none", summary: "no particle reached an answer" });
  const tied = posterior.filter((a) => top.probability - a.probability < TIE_TOLERANCE).map((a) => a.answer);
  if (tied.length > 1) return withDepth({ kind: "tie", tied, summary: `${orList(tied)} — tied at ${pct(top.probability)} each` });
  if (top.probability < UNCERTAIN_BELOW) {
    const next = posterior[1];
    return withDepth({
      kind: "uncertain",
      summary: `${top.answer} — uncertain: posterior ${pct(top.probability)}${next ? `, next ${next.answer} at ${pct(next.probability)}` : ""}`,
    });
  }
  return withDepth({ kind: "clear", summary: `${top.answer} (posterior ${pct(top.probability)})` });
}
