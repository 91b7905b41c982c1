/**
 * The arithmetic lines of a solution text, "a op b = c", and their digit columns: the input of the line
 * verifier. Parsing only finds where the numbers are; whether a line is right is never computed here —
 * the verifier has to learn that from outcomes. (The one sum the parser does is folding a chain,
 * below; the written result is still only read.)
 *
 * Read (docs/line-verifier.md):
 * - the shipped model's "12 + 30 = 42", exactly as before (test/unit/lineVerifierShipped.test.ts);
 * - GSM8K's calculator annotations "<<12*3=36>>" (on a line that has them, only they are read: the
 *   prose around them repeats them);
 * - × · ⋅ * and x (between numbers only) for times, ÷ and / for division, − (Unicode minus);
 * - LaTeX: $…$, \(…\), \[…\], align's &= and \\, \times, \cdot, \div, \frac{12}{4}, \text{…},
 *   \boxed{…}, and {,} or \, as thousands separators;
 * - markdown bold and list bullets; currency ($12, $12.00, 12 dollars); thousands separators (1,250
 *   reads as 1250); percents where the line holds as written (100% − 25% = 75%, 50% × 2 = 100%);
 * - every equation of a line, in prose or not ("So she has 12 + 30 = 42 pens.");
 * - chains: "a = 12 * 2 = 24" and "3 * 4 = 12 * 2 = 24" give "12 * 2 = 24" (a result must be a lone
 *   number, as "6/12 = 1/2" shows); a chain of one operator, "2 + 3 + 4 = 9" (+, − or ×), is folded
 *   to its last step, "5 + 4 = 9".
 *
 * Not read — the line adds nothing to log ψ, exactly as if it were not there, never a penalty:
 * decimals (no digit columns), negative numbers, expressions mixing operators or with parentheses,
 * a result that is itself an expression, percents that do not hold as written ("25% × 80 = 20"
 * means 0.25 × 80), numbers bound by ^ ( ) { } and the like or by a letter ("2x", "42nd"), and
 * numbers with words as units ("12 pens + 30 pens"). Numbers longer than the verifier's columns are
 * left out by the verifier, when it scores and when it trains (LineVerifier.encodeLine).
 */

export const OPERATORS = ["+", "-", "*", "/"] as const;
export type Operator = (typeof OPERATORS)[number];

export interface ArithmeticLine {
  a: string;
  op: Operator;
  b: string;
  c: string;
}

/** Digit code of a column that lies beyond a number's leading digit. */
export const BLANK = 10;
/** Digit code of "no column below" (the units column's neighbour). */
export const NO_COLUMN = 11;
/** Codes per digit slot: 0–9, BLANK, NO_COLUMN. */
export const DIGIT_CODES = 12;

type Token =
  | { kind: "num"; digits: string; decimal: boolean; percent: boolean; start: number; end: number }
  | { kind: "op"; op: Operator; start: number; end: number }
  | { kind: "eq"; start: number; end: number }
  | { kind: "word"; text: string; start: number; end: number }
  | { kind: "char"; ch: string; start: number; end: number };

const ANNOTATION = /<<([^<>]*)>>/g;

/** LaTeX, Unicode and markdown spelled the plain way: "12 * 3 = 36". */
function normalise(s: string): string {
  return (
    s
      .replace(/\\\$/g, "$")
      .replace(/\\[()[\]]/g, " ")
      .replace(/\\(?:begin|end)\s*\{[A-Za-z*]*\}/g, " ")
      .replace(/\\\\/g, " ; ")
      .replace(/\\(?:text|textbf|textrm|mathrm|mathbf|operatorname|boxed)\s*\{([^{}]*)\}/g, " $1 ")
      .replace(/\\d?frac\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}/g, " $1/$2 ")
      .replace(/\{,\}/g, ",")
      .replace(/(\d)\\,(?=\d{3}(?!\d))/g, "$1,")
      .replace(/\\(?:times|cdot|ast)(?![A-Za-z])/g, "*")
      .replace(/\\div(?![A-Za-z])/g, "/")
      .replace(/\\%/g, "%")
      .replace(/\\(?:left|right)(?![A-Za-z])/g, "")
      .replace(/\\(?:quad|qquad)(?![A-Za-z])|\\[,;:! ]/g, " ")
      .replace(/[&$€£]/g, " ")
      .replace(/[×·⋅∙∗]/g, "*")
      .replace(/÷/g, "/")
      .replace(/−/g, "-")
      .replace(/==/g, "=")
      // "**" between numbers is a power (a glue character, below); elsewhere it is markdown bold.
      .replace(/(\d)\s*\*\*\s*(?=\d)/g, "$1^")
      .replace(/\*\*|__/g, " ")
      // A list bullet or number at the start of the line.
      .replace(/^\s*(?:[-*+•]|\d+[.)])\s+/, " ")
  );
}

const TOKEN = /\s+|(\.\d+|(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(?!\d)(\s*%)?|([-+*/])|(=)|([A-Za-z]+)|([^])/y;

function tokenize(s: string): Token[] {
  const out: Token[] = [];
  TOKEN.lastIndex = 0;
  for (let m = TOKEN.exec(s); m && m[0].length; m = TOKEN.exec(s)) {
    const start = m.index,
      end = TOKEN.lastIndex;
    if (m[1] !== undefined) {
      const [int, frac = ""] = m[1].split(".");
      out.push({ kind: "num", digits: int.replace(/,/g, ""), decimal: int === "" || /[1-9]/.test(frac), percent: !!m[2], start, end });
    } else if (m[3]) out.push({ kind: "op", op: m[3] as Operator, start, end });
    else if (m[4]) out.push({ kind: "eq", start, end });
    else if (m[5]) out.push({ kind: "word", text: m[5], start, end });
    else if (m[6]) out.push({ kind: "char", ch: m[6], start, end });
  }
  // "x" between two numbers is a times sign; "dollars" after a number is a unit as neutral as "$".
  const kept: Token[] = [];
  out.forEach((t, i) => {
    const prev = out[i - 1],
      next = out[i + 1];
    if (t.kind === "word" && t.text === "x" && prev?.kind === "num" && next?.kind === "num")
      kept.push({ kind: "op", op: "*", start: t.start, end: t.end });
    else if (!(t.kind === "word" && /^dollars?$/i.test(t.text) && prev?.kind === "num")) kept.push(t);
  });
  return kept;
}

/** Characters that bind to a number beside them, so that it is not a whole operand: 2^3, (4), 5!, {6}. */
const GLUE = new Set("()[]{}^!|<>_\\√~#@'\"");

const adjacent = (a: Token | undefined, b: Token | undefined) => !!a && !!b && a.end === b.start;

/** May the number `t` start an operand, given the token before it? */
function freeBefore(before: Token | undefined, prev: Token | undefined, t: Token): boolean {
  if (!prev) return true;
  // "2,3" "1.5" and "6:00" or "3:4" (not "Week 1:600") are other numbers.
  if (prev.kind === "char")
    return (
      !GLUE.has(prev.ch) &&
      !(adjacent(prev, t) && (/[.,]/.test(prev.ch) || (prev.ch === ":" && before?.kind === "num" && adjacent(before, prev))))
    );
  return !(prev.kind === "word" && adjacent(prev, t));
}

/** May the number `t` end a result, given the tokens after it? */
function freeAfter(t: Token, next: Token | undefined, after: Token | undefined): boolean {
  if (!next || next.kind === "eq") return true;
  if (next.kind === "char")
    return !GLUE.has(next.ch) && !(adjacent(t, next) && /[.,:]/.test(next.ch) && after?.kind === "num" && adjacent(next, after));
  return !(next.kind === "word" && adjacent(t, next));
}

/** Whether percent signs leave the line true as written: 100% − 25% = 75%, 50% × 2 = 100%, not 25% × 80 = 20. */
function percentsHold(a: boolean, op: Operator, b: boolean, c: boolean): boolean {
  const [pa, pb, pc] = [a, b, c].map(Number);
  if (op === "*") return pa + pb === pc;
  if (op === "/") return pa - pb === pc;
  return pa === pb && pb === pc;
}

/** The arithmetic lines written in one piece of text (no newline). */
function readSegment(segment: string): ArithmeticLine[] {
  const tokens = tokenize(normalise(segment));
  const out: ArithmeticLine[] = [];
  // a op b = c, or a chain a op b op … = c of one operator: nothing may bind a from before nor c from
  // after (so that a is not the end of a longer expression, nor c the start of one).
  for (let i = 0; i < tokens.length; i++) {
    const first = tokens[i];
    if (first.kind !== "num") continue;
    const prev = tokens[i - 1];
    if (prev && (prev.kind === "op" || prev.kind === "num" || !freeBefore(tokens[i - 2], prev, first))) continue;
    const operands = [first];
    const ops: Operator[] = [];
    let k = i + 1;
    for (; tokens[k]?.kind === "op" && tokens[k + 1]?.kind === "num"; k += 2) {
      ops.push((tokens[k] as { op: Operator }).op);
      operands.push(tokens[k + 1] as typeof first);
    }
    const [eq, c, next] = [tokens[k], tokens[k + 1], tokens[k + 2]];
    if (!ops.length || eq?.kind !== "eq" || c?.kind !== "num") continue;
    if (next && (next.kind === "op" || next.kind === "num" || !freeAfter(c, next, tokens[k + 3]))) continue;
    if (c.decimal || operands.some((t) => t.decimal)) continue;
    if (ops.length === 1) {
      const [a, b] = operands;
      if (percentsHold(a.percent, ops[0], b.percent, c.percent)) out.push({ a: a.digits, op: ops[0], b: b.digits, c: c.digits });
      continue;
    }
    const line = foldChain(operands, ops, c);
    if (line) out.push(line);
  }
  return out;
}

/**
 * "2 + 3 + 4 = 9" as the line "5 + 4 = 9": a chain of one operator (+, − or ×, whole numbers, no
 * percents) folded left to right up to its last operand. The partial result (2 + 3 = 5) is the only
 * arithmetic the parser ever does; the written result c is still only read, never checked.
 */
function foldChain(
  operands: readonly { digits: string; percent: boolean }[],
  ops: readonly Operator[],
  c: { digits: string; percent: boolean },
): ArithmeticLine | undefined {
  const op = ops[0];
  if (op === "/" || ops.some((o) => o !== op) || c.percent || operands.some((t) => t.percent)) return undefined;
  let partial = BigInt(operands[0].digits);
  for (let j = 1; j < operands.length - 1; j++) {
    const x = BigInt(operands[j].digits);
    partial = op === "+" ? partial + x : op === "-" ? partial - x : partial * x;
  }
  if (partial < 0n) return undefined;
  return { a: partial.toString(), op, b: operands[operands.length - 1].digits, c: c.digits };
}

/** Lines already read: a prefix is read again at every step, so its earlier lines repeat. */
const readLines = new Map<string, readonly ArithmeticLine[]>();
const READ_LINES_KEPT = 16384;

/** Every readable "a op b = c" of each line of `text`, in order (a line without one adds nothing). */
export function arithmeticLines(text: string): ArithmeticLine[] {
  const out: ArithmeticLine[] = [];
  for (const line of text.split("\n")) {
    if (!line.includes("=")) continue;
    let lines = readLines.get(line);
    if (!lines) {
      const annotations = [...line.matchAll(ANNOTATION)].map((m) => m[1]);
      lines = (annotations.length ? annotations : [line]).flatMap(readSegment);
      if (readLines.size >= READ_LINES_KEPT) readLines.clear();
      readLines.set(line, lines);
    }
    for (const l of lines) out.push({ ...l });
  }
  return out;
}

/** Digit codes of a number by column, units first: its last `columns` digits, BLANK beyond its length. */
export function digitColumns(n: string, columns: number): number[] {
  const out: number[] = [];
  for (let j = 0; j < columns; j++) out.push(j < n.length ? n.charCodeAt(n.length - 1 - j) - 48 : BLANK);
  return out;
}

/** A line as integers: [op, a_0…a_{D−1}, b_0…, c_0…] (units first). */
export function encodeLine(line: ArithmeticLine, columns: number): Int32Array {
  return Int32Array.of(
    OPERATORS.indexOf(line.op),
    ...digitColumns(line.a, columns),
    ...digitColumns(line.b, columns),
    ...digitColumns(line.c, columns),
  );
}

/** Whether every number of a line has at most `columns` digits (so that its digit columns are all of it). */
export const fitsColumns = (l: ArithmeticLine, columns: number) => l.a.length <= columns && l.b.length <= columns && l.c.length <= columns;

/** Length of an encoded line. */
export const encodedLength = (columns: number) => 1 + 3 * columns;

/** The key under which two lines compute the same expression. */
export const expressionKey = (l: ArithmeticLine) => `${l.a}${l.op}${l.b}`;
