/**
 * The openai backend seen from the editor, without `vscode` (unit-tested): how a server is named in the
 * status bar, what the engine process gets in its environment, and which engine errors are the server's.
 * The API key goes to the engine as OPENAI_API_KEY and nowhere else: not in a message, a label or a log.
 */
import { ErrorCodes, ServerSettings } from "../protocol/protocol";

/** The environment variable the engine reads the key from (src/engine/environment.ts). */
export const API_KEY_ENV = "OPENAI_API_KEY";

/**
 * The engine's environment: the parent's with the stored key as OPENAI_API_KEY; with no stored key,
 * undefined (the engine inherits the parent's environment as it is, its own OPENAI_API_KEY included).
 */
export function engineEnv(parent: NodeJS.ProcessEnv, storedKey: string | undefined): NodeJS.ProcessEnv | undefined {
  const key = storedKey?.trim();
  if (!key) return undefined;
  return { ...parent, [API_KEY_ENV]: key };
}

/** `url` without user and password (what the engine shows too); the text as given when it is no URL. */
export function urlWithoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    return u.toString();
  } catch {
    return url;
  }
}

/** The settings' server as the engine describes it: the URL without credentials and the served model. */
export function describeServer(server: ServerSettings): string {
  const url = server.url.trim();
  return `${url ? urlWithoutCredentials(url) : "no URL set"}${server.model ? ` (${server.model})` : ""}`;
}

/**
 * A short name for a server description (`http://127.0.0.1:8080/v1/completions (qwen)`): its host and
 * port, and the model in parentheses: `127.0.0.1:8080 (qwen)`. A description that is no URL stays whole.
 */
export function serverLabel(description: string): string {
  const m = /^(\S+)(\s+\(.*\))?$/.exec(description.trim());
  if (!m) return description;
  try {
    const u = new URL(m[1]);
    return `${u.host}${m[2] ?? ""}`;
  } catch {
    return description;
  }
}

/** What a failed solve is: the server's failure (Open Settings), a refusal the user can fix, a cancel, or else. */
export type SolveFailure = "server" | "input" | "cancelled" | "other";

export function solveFailure(e: unknown): SolveFailure {
  const code = (e as { code?: unknown } | undefined)?.code;
  if (code === ErrorCodes.serverError) return "server";
  if (code === ErrorCodes.inputError) return "input";
  if (code === ErrorCodes.cancelled || /cancel/i.test((e as Error | undefined)?.message ?? "")) return "cancelled";
  return "other";
}
