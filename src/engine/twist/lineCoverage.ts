/**
 * How much of a set of worked solutions the line verifier reads: of the lines that hold an equation
 * (an "=" between numbers, or a GSM8K "<<…=…>>" annotation), the share from which the parser takes at
 * least one line; and, where the reference is right, how many of the lines read are misread (a op b
 * is not c, so the verifier would be shown a wrong line where the text holds a right one).
 * Measured by scripts/line-coverage.ts and a unit test; see docs/line-verifier.md.
 */
import { ArithmeticLine, arithmeticLines } from "./arithmeticLines";

/** A line holding an equation: a GSM8K annotation, or an "=" between two numbers (units, LaTeX and all). */
const EQUATION = /<<[^<>]*=[^<>]*>>|\d\s*(?:%|\\%|\$|\)|\\\)|\})?\s*=\s*[-$\\({\s]*\.?\d/;
const ANNOTATION = /<<([^<>]*=[^<>]*)>>/g;

export interface Coverage {
  /** Lines holding an equation. */
  lines: number;
  /** Of them, lines the parser reads (at least one arithmetic line). */
  read: number;
  /** Of them, lines read with no arithmetic line misread. */
  readRight: number;
  /** Arithmetic lines read, and those whose a op b ≠ c (misreadings of a right reference). */
  arithmetic: number;
  misread: number;
  /** GSM8K annotations, and those read alone (as "<<…>>"). */
  annotations: number;
  annotationsRead: number;
  /** A few lines holding an equation that are not read, for the lab note. */
  unreadExamples: string[];
  /** A few lines misread, likewise. */
  misreadExamples: string[];
}

/** Whether a op b = c holds (exactly; division without remainder). */
export function holds(l: ArithmeticLine): boolean {
  const a = Number(l.a),
    b = Number(l.b),
    c = Number(l.c);
  switch (l.op) {
    case "+":
      return a + b === c;
    case "-":
      return a - b === c;
    case "*":
      return a * b === c;
    case "/":
      return b !== 0 && a === b * c;
  }
}

export function lineCoverage(
  solutions: readonly string[],
  examples = 20,
  parse: (text: string) => ArithmeticLine[] = arithmeticLines,
): Coverage {
  const out: Coverage = {
    lines: 0,
    read: 0,
    readRight: 0,
    arithmetic: 0,
    misread: 0,
    annotations: 0,
    annotationsRead: 0,
    unreadExamples: [],
    misreadExamples: [],
  };
  for (const solution of solutions) {
    for (const line of solution.split("\n")) {
      if (!EQUATION.test(line)) continue;
      out.lines++;
      const parsed = parse(line);
      if (parsed.length) out.read++;
      else if (out.unreadExamples.length < examples) out.unreadExamples.push(line);
      out.arithmetic += parsed.length;
      const wrong = parsed.filter((l) => !holds(l));
      out.misread += wrong.length;
      if (parsed.length && !wrong.length) out.readRight++;
      if (wrong.length && out.misreadExamples.length < examples) out.misreadExamples.push(line);
      for (const m of line.matchAll(ANNOTATION)) {
        out.annotations++;
        if (parse(`<<${m[1]}>>`).length) out.annotationsRead++;
      }
    }
  }
  return out;
}
