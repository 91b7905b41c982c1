/** Shared helpers for the CLI's commands: typed option readers and the error a user can act on. */

/** A mistake in how the command was called: printed without a stack trace, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export type OptionValues = Record<string, string | boolean | undefined>;

export function intOption(values: OptionValues, name: string, fallback: number, min = 0): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (typeof raw !== "string" || !Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${raw}"`);
  return n;
}

export function numberOption(values: OptionValues, name: string, fallback: number, min = 0): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (typeof raw !== "string" || !Number.isFinite(n) || n < min) throw new UsageError(`--${name} must be a number >= ${min}, got "${raw}"`);
  return n;
}

export function choiceOption<T extends string>(values: OptionValues, name: string, choices: readonly T[], fallback: T): T {
  const raw = values[name];
  if (raw === undefined) return fallback;
  if (typeof raw !== "string" || !choices.includes(raw as T)) throw new UsageError(`--${name} must be one of ${choices.join(", ")}, got "${raw}"`);
  return raw as T;
}

export function stringOption(values: OptionValues, name: string): string | undefined {
  const raw = values[name];
  return typeof raw === "string" ? raw : undefined;
}
