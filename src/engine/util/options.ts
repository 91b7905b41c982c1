/** Typed readers of options (command-line flags, or the same names from a JSON request). */
import { InputError } from "./errors";

/** A mistake in how a command or request was made: shown without a stack trace (exit code 2). */
export class UsageError extends InputError {}

/** Parsed flags: strings as typed on a command line, or numbers and booleans from a JSON caller. */
export type OptionValues = Record<string, string | number | boolean | undefined>;

/** A number flag: `integer` decides whether fractions are accepted. */
function numeric(values: OptionValues, name: string, fallback: number, min: number, integer: boolean, max = Infinity): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  const valid =
    (typeof raw === "string" || typeof raw === "number") &&
    raw !== "" &&
    (integer ? Number.isInteger(n) : Number.isFinite(n)) &&
    n >= min &&
    n <= max;
  const range = max === Infinity ? `>= ${min}` : `from ${min} to ${max}`;
  if (!valid) throw new UsageError(`--${name} must be ${integer ? "an integer" : "a number"} ${range}, got "${raw}"`);
  return n;
}

export const intOption = (values: OptionValues, name: string, fallback: number, min = 0, max = Infinity): number =>
  numeric(values, name, fallback, min, true, max);

/** The most particles (or samples) one run takes, as the engine server bounds them: more is a typo, not a budget. */
export const MAX_PARTICLES = 4096;

/** The most CPU threads a command takes: more than any machine's cores is a typo. */
export const MAX_THREADS = 256;

/** --threads N, bounded; undefined when not given (onnxruntime then uses all cores). */
export const threadsOption = (values: OptionValues): number | undefined =>
  values.threads === undefined ? undefined : intOption(values, "threads", 1, 1, MAX_THREADS);

export const numberOption = (values: OptionValues, name: string, fallback: number, min = 0): number =>
  numeric(values, name, fallback, min, false);

export function choiceOption<T extends string>(values: OptionValues, name: string, choices: readonly T[], fallback: T): T {
  const raw = values[name];
  if (raw === undefined) return fallback;
  if (typeof raw !== "string" || !choices.includes(raw as T))
    throw new UsageError(`--${name} must be one of ${choices.join(", ")}, got "${raw}"`);
  return raw as T;
}

export function stringOption(values: OptionValues, name: string): string | undefined {
  const raw = values[name];
  return typeof raw === "string" ? raw : undefined;
}
