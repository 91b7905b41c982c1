/** `twisted-smc data synth`: writes synthetic problems as GSM8K-format JSONL. */
import { parseArgs } from "node:util";
import { synthesize, Split } from "../math/problems";
import { writeFileAtomic } from "../util/atomicWrite";
import { choiceOption, intOption, stringOption, UsageError } from "../util/options";

export const DATA_HELP = `Usage: twisted-smc data synth --split train|test --n N [--seed S] [--out FILE]

Writes N synthetic grade-school word problems (1-5 steps, + - * / exact, numbers up to 3 digits) as
JSONL lines {"question", "answer": "...steps...\\n#### N"}. The splits never share a problem and the
same seed always gives the same list. Without --out the lines go to standard output.`;

export async function dataCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      split: { type: "string" },
      n: { type: "string" },
      seed: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(DATA_HELP);
    return;
  }
  if (positionals[0] === undefined) throw new UsageError("data needs a command: synth (see twisted-smc data --help)");
  if (positionals[0] !== "synth") throw new UsageError(`unknown data command "${positionals[0]}" (see twisted-smc data --help)`);
  if (values.split === undefined) throw new UsageError("data synth needs --split train|test");
  const split = choiceOption<Split>(values, "split", ["train", "test"], "train");
  const n = intOption(values, "n", 1000, 1);
  const seed = intOption(values, "seed", 0);
  const lines = synthesize(split, n, seed).map((p) => JSON.stringify({ question: p.question, answer: p.answer }) + "\n");
  const out = stringOption(values, "out");
  if (out) {
    writeFileAtomic(out, lines.join(""));
    console.error(`wrote ${n} ${split} problems (seed ${seed}) to ${out}`);
  } else {
    for (const line of lines) process.stdout.write(line);
  }
}
