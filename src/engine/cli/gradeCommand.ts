/** `twisted-smc grade --jsonl FILE`: extracts each response's final answer and rewards it against the gold. */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { answersMatch, extractAnswer, goldAnswer, parseNumber } from "../math/answer";
import { stringOption, UsageError } from "../util/options";

export const GRADE_HELP = `Usage: twisted-smc grade --jsonl FILE [--response FIELD] [--gold FIELD] [--json]

Reads JSONL lines holding a model response and a gold answer, prints each line's extracted answer
and reward (1 when it equals the gold numerically), then a summary. The gold may be a number or a
GSM8K solution ending in "#### N". Defaults fit GSM8K files: --response answer --gold answer, so
grading a GSM8K file against itself checks the extractor.`;

export interface GradedLine {
  line: number;
  extracted: string | null;
  form: string | null;
  gold: number;
  reward: 0 | 1;
}

export async function gradeCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      jsonl: { type: "string" },
      response: { type: "string" },
      gold: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(GRADE_HELP);
    return;
  }
  const file = stringOption(values, "jsonl");
  if (!file) throw new UsageError("grade needs --jsonl FILE (see twisted-smc grade --help)");
  const responseField = values.response ?? "answer";
  const goldField = values.gold ?? "answer";
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const graded: GradedLine[] = [];
  const skipped: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    if (!raw.trim()) return;
    const where = `${file}:${i + 1}`;
    let row: Record<string, unknown>;
    try {
      row = JSON.parse(raw);
    } catch (e) {
      skipped.push(`${where}: not valid JSON (${(e as Error).message})`);
      return;
    }
    const response = row?.[responseField];
    const goldRaw = row?.[goldField];
    if (typeof response !== "string") return void skipped.push(`${where}: no string field "${responseField}"`);
    const gold =
      typeof goldRaw === "number"
        ? goldRaw
        : typeof goldRaw === "string"
          ? goldRaw.includes("####")
            ? goldAnswer(goldRaw)
            : parseNumber(goldRaw)
          : undefined;
    if (gold === undefined) return void skipped.push(`${where}: no numeric gold answer in field "${goldField}"`);
    const got = extractAnswer(response);
    const reward = got !== undefined && answersMatch(got.value, gold) ? 1 : 0;
    graded.push({ line: i + 1, extracted: got?.key ?? null, form: got?.form ?? null, gold, reward });
  });
  const correct = graded.filter((g) => g.reward === 1).length;
  const summary = { file, lines: graded.length, correct, accuracy: graded.length ? correct / graded.length : 0, skipped: skipped.length };
  if (values.json) {
    console.log(JSON.stringify({ summary, lines: graded, skipped }, null, 2));
  } else {
    for (const g of graded)
      console.log(
        `${String(g.line).padStart(6)}  reward ${g.reward}  extracted ${g.extracted ?? "(none)"}  gold ${g.gold}${g.form ? `  [${g.form}]` : ""}`,
      );
    for (const s of skipped) console.error(`skipped ${s}`);
    console.log(`\n${correct}/${graded.length} correct (${(100 * summary.accuracy).toFixed(2)}%), ${skipped.length} line(s) skipped`);
  }
}
