/**
 * Final-answer extraction and the reward (the seed's extract_answer_from_response / calculate_reward).
 * Model output is untrusted free text: every form is parsed defensively and never throws.
 */

export interface ExtractedAnswer {
  /** Canonical text of the number, e.g. "1250", "-3", "0.75". Used as the key for voting. */
  key: string;
  value: number;
  /** Which rule found it: useful when debugging a grader. */
  form: "####" | "boxed" | "the answer is" | "answer:" | "last number";
}

// A number as people write it: optional sign and currency, thousands separators, decimals, fractions,
// leading-dot decimals and scientific notation (the exponent needs digits, so the "e" of "3 eggs" stays a word).
// Every regex here must stay linear on untrusted text: at most one optional space or tab ([ \t]?) between
// sign, currency, digits and a fraction's slash, never an unbounded \s* (two adjacent \s* made 2,000 spaces
// take seconds; the scan is retried at each start position, so even one \s* there is quadratic).
const GAP = String.raw`[ \t]?`;
const UNSIGNED = String.raw`(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?`;
const NUMBER = String.raw`-?(?:${GAP}\$)?${GAP}${UNSIGNED}(?:${GAP}/${GAP}\d+(?:\.\d+)?)?`;
const NUMBER_RE = new RegExp(NUMBER, "g");
const FIRST_NUMBER_RE = new RegExp(NUMBER);

/** Parses one number in any accepted form; undefined when the text holds none. */
export function parseNumber(text: string): number | undefined {
  const m = text.match(FIRST_NUMBER_RE);
  if (!m) return undefined;
  const raw = m[0].replace(/[ \t$,]/g, "");
  const negative = raw.startsWith("-");
  const body = negative ? raw.slice(1) : raw;
  let value: number;
  if (body.includes("/")) {
    const [num, den] = body.split("/").map(Number);
    if (!Number.isFinite(num) || !Number.isFinite(den) || den === 0) return undefined;
    value = num / den;
  } else {
    value = Number(body);
  }
  if (!Number.isFinite(value)) return undefined;
  return negative ? -value : value;
}

/** Canonical key: integers without decimals, others rounded to 6 significant decimals. */
export function answerKey(value: number): string {
  if (Object.is(value, -0)) value = 0;
  if (Number.isInteger(value)) return String(value);
  return String(Number(value.toFixed(6)));
}

function lastNumberIn(text: string): number | undefined {
  const all = text.match(NUMBER_RE) ?? []; // just the strings: cheaper than matchAll's match objects
  for (let i = all.length - 1; i >= 0; i--) {
    const v = parseNumber(all[i]);
    if (v !== undefined) return v;
  }
  return undefined;
}

function firstNumberIn(text: string): number | undefined {
  return parseNumber(text);
}

/** Finds the final answer of a response, trying explicit markers before the last number. */
export function extractAnswer(response: string): ExtractedAnswer | undefined {
  // GSM8K calculator annotations. [^<>] rather than [^>]: each "<<" then scans only to the next "<", where
  // [^>] let every "<<" of "<<<<…" rescan to the end (quadratic); real annotations never hold a "<".
  const text = response.replace(/<<[^<>]*>>/g, "");
  const found = (value: number | undefined, form: ExtractedAnswer["form"]) =>
    value === undefined ? undefined : { key: answerKey(value), value, form };

  // The marker rules stay linear: each starts at a literal word, so a run of spaces is scanned from one start
  // only, and a capture ending in [^\n]* always matches, so the \s* before it never gives anything back.
  const hashes = text.match(/####\s*([^\n]*)/);
  if (hashes) {
    const r = found(firstNumberIn(hashes[1]), "####");
    if (r) return r;
  }
  const boxed = [...text.matchAll(/\\boxed\s*\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}/g)];
  if (boxed.length) {
    const inner = boxed[boxed.length - 1][1].replace(/\\frac\s*\{([^}]*)\}\s*\{([^}]*)\}/g, "$1/$2").replace(/\\[a-z]+/gi, " ");
    const r = found(firstNumberIn(inner), "boxed");
    if (r) return r;
  }
  const said = [...text.matchAll(/the (?:final )?answer is[:\s]*([^\n]*)/gi)];
  if (said.length) {
    const r = found(firstNumberIn(said[said.length - 1][1]), "the answer is");
    if (r) return r;
  }
  const labelled = [...text.matchAll(/(?:^|\n|\s)(?:answer|a)\s*:\s*([^\n]*)/gi)];
  if (labelled.length) {
    const r = found(firstNumberIn(labelled[labelled.length - 1][1]), "answer:");
    if (r) return r;
  }
  return found(lastNumberIn(text), "last number");
}

/** The gold answer of a GSM8K-style solution (the number after `####`). */
export function goldAnswer(solution: string): number | undefined {
  const m = solution.match(/####\s*([^\n]*)/);
  return m ? parseNumber(m[1]) : undefined;
}

export function answersMatch(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(a), Math.abs(b));
}

/** 1 when the response's final answer equals the gold answer numerically, else 0. */
export function reward(response: string, gold: number): number {
  const got = extractAnswer(response);
  return got !== undefined && answersMatch(got.value, gold) ? 1 : 0;
}
