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
