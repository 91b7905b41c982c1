/** Typed readers of options (command-line flags, or the same names from a JSON request). */
import { InputError } from "./errors";

/** A mistake in how a command or request was made: shown without a stack trace (exit code 2). */
export class UsageError extends InputError {}

/** Parsed flags: strings as typed on a command line, or numbers and booleans from a JSON caller. */
export type OptionValues = Record<string, string | number | boolean | undefined>;

/** A number flag: `integer` decides whether fractions are accepted. */
function numeric(values: OptionValues, name: string, fallback: number, min: number, integer: boolean): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  const valid = (typeof raw === "string" || typeof raw === "number") && raw !== "" && (integer ? Number.isInteger(n) : Number.isFinite(n)) && n >= min;
  if (!valid) throw new UsageError(`--${name} must be ${integer ? "an integer" : "a number"} >= ${min}, got "${raw}"`);
  return n;
}

export const intOption = (values: OptionValues, name: string, fallback: number, min = 0): number => numeric(values, name, fallback, min, true);

export const numberOption = (values: OptionValues, name: string, fallback: number, min = 0): number => numeric(values, name, fallback, min, false);

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
