/**
 * One loader for every problem set in the GSM8K JSONL format ({"question", "answer": "...\n#### N"}):
 * the synthetic generator's output and real GSM8K alike. Bad lines are reported with file and line.
 */
import { readFileSync } from "node:fs";
import { goldAnswer } from "./answer";

export interface MathProblem {
  question: string;
  /** The reference worked solution, when the set has one. */
  solution?: string;
  /** The numeric gold answer. */
  gold: number;
  /** Where it came from, e.g. "test.jsonl:12", for messages. */
  source: string;
}

export interface DatasetIssue {
  source: string;
  message: string;
}

export interface LoadedDataset {
  problems: MathProblem[];
  /** Lines that were skipped, each with the reason. */
  issues: DatasetIssue[];
}

export interface JsonlFields {
  question: string;
  answer: string;
}

export const GSM8K_FIELDS: JsonlFields = { question: "question", answer: "answer" };

/** Parses JSONL text; malformed lines are skipped and reported, never thrown. */
export function parseProblemsJsonl(text: string, name: string, fields: JsonlFields = GSM8K_FIELDS): LoadedDataset {
  const problems: MathProblem[] = [];
  const issues: DatasetIssue[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const source = `${name}:${i + 1}`;
    if (!line.trim()) return;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      issues.push({ source, message: `not valid JSON (${(e as Error).message})` });
      return;
    }
    if (typeof row !== "object" || row === null) {
      issues.push({ source, message: "a line must be a JSON object" });
      return;
    }
    const q = (row as Record<string, unknown>)[fields.question];
    const a = (row as Record<string, unknown>)[fields.answer];
    if (typeof q !== "string" || !q.trim()) {
      issues.push({ source, message: `missing string field "${fields.question}"` });
      return;
    }
    let gold: number | undefined;
    let solution: string | undefined;
    if (typeof a === "number") gold = a;
    else if (typeof a === "string") {
      solution = a;
      gold = a.includes("####") ? goldAnswer(a) : goldAnswer(`#### ${a}`);
    }
    if (gold === undefined || !Number.isFinite(gold)) {
      issues.push({ source, message: `field "${fields.answer}" has no numeric answer (expected "... #### N" or a number)` });
      return;
    }
    problems.push({ question: q, solution, gold, source });
  });
  return { problems, issues };
}

export function loadProblemsJsonl(path: string, fields: JsonlFields = GSM8K_FIELDS): LoadedDataset {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new Error(`cannot read problem file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseProblemsJsonl(text, path, fields);
}
