/**
 * Finding math problems in Markdown and writing results back, as pure functions over text and offsets
 * (no `vscode` import), so they are tested without an editor.
 */
import type { AnswerConfidence } from "../protocol/protocol";

export interface ProblemSpan {
  /** Offsets in the document: the block the problem came from. */
  start: number;
  end: number;
  /** The problem text, with list markers, quote markers and heading hashes removed. */
  text: string;
}

/** Marks a result block so a second solve replaces it instead of stacking results. */
export const RESULT_MARKER = "<!-- twisted-smc:result -->";

interface Line {
  text: string;
  start: number;
  end: number;
}

function lines(doc: string): Line[] {
  const out: Line[] = [];
  let start = 0;
  for (const text of doc.split("\n")) {
    out.push({ text, start, end: start + text.length });
    start += text.length + 1;
  }
  return out;
}

const isBlank = (l: string) => l.trim() === "";
const heading = /^\s{0,3}#{1,6}\s+/;
const listItem = /^\s*(?:[-*+]|\d+[.)])\s+/;
const quote = /^\s{0,3}>\s?/;
const fence = /^\s{0,3}(```|~~~)/;

/** Removes Markdown markers from a block, keeping the words. */
export function plainText(block: string): string {
  return block
    .split("\n")
    .filter((l) => !l.includes(RESULT_MARKER))
    .map((l) => l.replace(quote, "").replace(heading, "").replace(listItem, "").trim())
    .filter(Boolean)
    .join(" ")
    .replace(/\*\*|__|`/g, "")
    .replace(/\s+/g, " ")
    .trim();
}

/**
 * Whether text reads like a math word problem: some words and at least one number. It keeps people
 * from running the solver on a heading or on code by mistake.
 */
export function looksLikeMathProblem(text: string): boolean {
  const words = text.match(/[A-Za-z]{2,}/g) ?? [];
  return /\d/.test(text) && words.length >= 3;
}

/** A document split into lines once, with which lines sit inside a code fence: every scan below is linear. */
interface Scan {
  doc: string;
  ls: Line[];
  /** Whether line i lies inside a fenced code block (its opening fence line excluded). */
  fenced: boolean[];
}

function scan(doc: string): Scan {
  const ls = lines(doc);
  const fenced: boolean[] = [];
  let open = false;
  for (const l of ls) {
    fenced.push(open);
    if (fence.test(l.text)) open = !open;
  }
  return { doc, ls, fenced };
}

/** The problem under the cursor: its list item, blockquote, heading section or paragraph. */
export function problemAt(doc: string, offset: number): ProblemSpan | undefined {
  const s = scan(doc);
  let i = s.ls.findIndex((l) => offset >= l.start && offset <= l.end);
  if (i < 0) i = s.ls.length - 1;
  return problemAtLine(s, i);
}

function problemAtLine(s: Scan, i: number): ProblemSpan | undefined {
  const { doc, ls } = s;
  if (s.fenced[i]) return undefined;
  const span = (from: number, to: number): ProblemSpan | undefined => {
    const start = ls[from].start,
      end = ls[to].end;
    const text = plainText(doc.slice(start, end));
    return text ? { start, end, text } : undefined;
  };
  const here = ls[i].text;
  if (isBlank(here)) return undefined;
  if (here.includes(RESULT_MARKER)) return undefined;

  if (heading.test(here)) {
    // A heading: the problem written under it (its first block), else the heading's own words.
    let j = i + 1;
    while (j < ls.length && isBlank(ls[j].text)) j++;
    const body = j < ls.length && !heading.test(ls[j].text) && !fence.test(ls[j].text) ? problemAtLine(s, j) : undefined;
    return body ? { ...body, start: ls[i].start } : span(i, i);
  }
  if (quote.test(here)) {
    let from = i,
      to = i;
    while (from > 0 && quote.test(ls[from - 1].text) && !ls[from - 1].text.includes(RESULT_MARKER)) from--;
    while (to + 1 < ls.length && quote.test(ls[to + 1].text) && !ls[to + 1].text.includes(RESULT_MARKER)) to++;
    return span(from, to);
  }
  // A list item: from its marker line through its indented continuation lines.
  let from = i;
  while (from > 0 && !listItem.test(ls[from].text) && !isBlank(ls[from - 1].text) && /^\s+\S/.test(ls[from].text)) from--;
  if (listItem.test(ls[from].text)) {
    let to = from;
    while (to + 1 < ls.length && !isBlank(ls[to + 1].text) && !listItem.test(ls[to + 1].text) && !heading.test(ls[to + 1].text)) to++;
    return span(from, to);
  }
  // A paragraph: the run of non-blank lines around the cursor.
  from = i;
  let to = i;
  while (from > 0 && !isBlank(ls[from - 1].text) && !heading.test(ls[from - 1].text) && !ls[from - 1].text.includes(RESULT_MARKER)) from--;
  while (to + 1 < ls.length && !isBlank(ls[to + 1].text) && !heading.test(ls[to + 1].text) && !ls[to + 1].text.includes(RESULT_MARKER))
    to++;
  return span(from, to);
}

/** Every block of a document in order (each line belongs to at most one), by `problemAtLine`. */
function blocks(s: Scan, skipLine: (i: number) => boolean = () => false): ProblemSpan[] {
  const out: ProblemSpan[] = [];
  let offset = 0;
  for (let i = 0; i < s.ls.length; i++) {
    if (s.ls[i].start < offset || isBlank(s.ls[i].text) || skipLine(i)) continue;
    const p = problemAtLine(s, i);
    if (!p) continue;
    out.push(p);
    offset = p.end + 1;
  }
  return out;
}

/** Every problem in a document, in order: each paragraph, list item or blockquote that looks like math. */
export function allProblems(doc: string): ProblemSpan[] {
  const s = scan(doc);
  return blocks(s, (i) => heading.test(s.ls[i].text) || s.fenced[i] || fence.test(s.ls[i].text)).filter((p) =>
    looksLikeMathProblem(p.text),
  );
}

export interface ResultSummary {
  answer: string | null;
  probability: number;
  confidence: AnswerConfidence;
  particles: number;
  level: string;
  twist: string | null;
  /** A command URI that opens the run in the panel. */
  openRunUri?: string;
}

/** Model output (an answer) as Markdown text: never markup, and never a second line (signs and decimal points read as they are mid-line). */
function literal(text: string): string {
  return text.replace(/[\r\n]+/g, " ").replace(/[\\`*_{}[\]()#+!|<>~]/g, "\\$&");
}

/**
 * The Markdown block written after a problem. It says as much as the posterior supports: a tie names
 * every tied answer, an uncertain answer says so, and a problem outside the model's depth is marked.
 */
export function formatResult(r: ResultSummary): string {
  const c = r.confidence;
  const pct = (p: number) => `${(100 * p).toFixed(1)}%`;
  const how = `${r.particles} particles, ${r.level}-level ${r.twist ? "twisted SMC" : "SMC without twist"}`;
  let said: string;
  if (r.answer === null || c.kind === "none") said = `no answer (${how})`;
  else if (c.kind === "tie" && c.tied) {
    const names = c.tied.map((a) => `**${literal(a)}**`);
    said = `tied — ${names.slice(0, -1).join(", ")} or ${names[names.length - 1]} at ${pct(r.probability)} each (${how})`;
  } else if (c.kind === "uncertain") said = `**${literal(r.answer)}**, uncertain (posterior ${pct(r.probability)}, ${how})`;
  else said = `**${literal(r.answer)}** (posterior ${pct(r.probability)}, ${how})`;
  const depth = c.outOfDepth ? " · ⚠ out of the model's depth: the answer is a guess" : "";
  const link = r.openRunUri ? ` · [open run](${r.openRunUri})` : "";
  return `> ${RESULT_MARKER} Answer: ${said}${depth}${link}`;
}

export interface TextEditPlan {
  start: number;
  end: number;
  text: string;
}

/**
 * Where a result goes: right after the problem's block, replacing a previous result there. The
 * problem is found again by its text near where it was, since the user may have edited the document
 * while the engine ran; undefined when it is gone.
 */
export function planResultInsertion(doc: string, problem: ProblemSpan, result: string): TextEditPlan | undefined {
  const end = relocate(doc, problem);
  if (end === undefined) return undefined;
  const rest = doc.slice(end);
  const previous = rest.match(new RegExp(`^\\n\\n> ${escapeRegExp(RESULT_MARKER)}[^\\n]*`));
  if (previous) return { start: end, end: end + previous[0].length, text: `\n\n${result}` };
  return { start: end, end, text: `\n\n${result}` };
}

/** The end offset of the problem's block in `doc`, found by its text, nearest to where it was. */
export function relocate(doc: string, problem: ProblemSpan): number | undefined {
  const candidates: number[] = [];
  for (const p of blocks(scan(doc))) if (p.text === problem.text) candidates.push(p.end);
  if (!candidates.length) return undefined;
  return candidates.reduce((best, c) => (Math.abs(c - problem.end) < Math.abs(best - problem.end) ? c : best));
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
