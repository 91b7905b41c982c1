/** A `twisted-smc` task definition and the command line it stands for (no `vscode` import: unit-tested). */

export const TASK_TYPE = "twisted-smc";

export interface TwistedSmcTaskDefinition {
  type: typeof TASK_TYPE;
  /** train (default) or eval. */
  command?: "train" | "eval";
  [flag: string]: unknown;
}

/** The command line for a definition: every other property becomes --name value (true: --name). */
export function taskArgs(def: TwistedSmcTaskDefinition): string[] {
  const command = def.command ?? "train";
  const args: string[] = [command];
  for (const [key, value] of Object.entries(def)) {
    if (key === "type" || key === "command" || value === undefined || value === false || value === null) continue;
    args.push(`--${key}`);
    if (value !== true) args.push(String(value));
  }
  if (command === "train") args.push("--progress", "json");
  return args;
}

/** How much training: a quick run to try things, or the full run that trained the shipped twist. */
export interface TrainingPreset {
  label: string;
  /** What it costs, measured for the line verifier on 2 cores (other twists take longer). */
  description: string;
  flags: { num_examples: number; num_epochs: number };
}

export const TRAINING_PRESETS: readonly TrainingPreset[] = [
  // Measured on the shipped model, line verifier, 2 cores (2026-12-05): quick's twist's weighted vote
  // scored 72.0% on 200 test problems against 71.0% for majority vote; the full run trained the shipped
  // twist (77.6% against 66.8% on 500). Quick took 93 s on 2026-12-07 (`train --num_examples 400
  // --num_epochs 1`, its final power chosen included).
  {
    label: "quick",
    description: "400 problems, one pass: about 2 minutes on 2 cores; a first twist to try, about as good as majority vote",
    flags: { num_examples: 400, num_epochs: 1 },
  },
  {
    label: "full",
    description:
      "4,000 problems, three passes: about 31 minutes on 2 cores; how the shipped twist was trained (11 points over majority vote)",
    flags: { num_examples: 4000, num_epochs: 3 },
  },
];
