/**
 * The arithmetic lines of a solution text, "a op b = c" (also GSM8K's "<<a*b=c>>"), and their digit
 * columns: the input of the line verifier. Parsing only finds where the numbers are; whether a line is
 * right is never computed here — the verifier has to learn that from outcomes.
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

const OP_ALIASES: Record<string, Operator> = { "+": "+", "-": "-", "−": "-", "*": "*", "×": "*", x: "*", "/": "/", "÷": "/" };
// Thousands separators are allowed inside a number ("1,200"); decimals are not (the line is skipped).
const LINE = /(?<![\d.,])(\d[\d,]*)\s*([-+*/−×÷x])\s*(\d[\d,]*)\s*=\s*(\d[\d,]*)(?![\d,]*\.\d)/;

/** The first complete "a op b = c" of each line of `text` (a line without one is skipped). */
export function arithmeticLines(text: string): ArithmeticLine[] {
  const out: ArithmeticLine[] = [];
  for (const line of text.split("\n")) {
    const m = LINE.exec(line);
    if (!m) continue;
    const clean = (s: string) => s.replace(/,/g, "");
    out.push({ a: clean(m[1]), op: OP_ALIASES[m[2]], b: clean(m[3]), c: clean(m[4]) });
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

/** Length of an encoded line. */
export const encodedLength = (columns: number) => 1 + 3 * columns;

/** The key under which two lines compute the same expression. */
export const expressionKey = (l: ArithmeticLine) => `${l.a}${l.op}${l.b}`;
