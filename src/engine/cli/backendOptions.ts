/**
 * The backend flags `solve`, `sample` and `eval` share: `--backend local|openai`, `--server URL`,
 * `--server-model NAME`, `--max-requests N`. With `openai` the model runs on an inference server and
 * `--model` names only its tokenizer files (without it, the server formats the prompt); the flags that
 * choose how a local model runs are refused, since they would silently do nothing.
 */
import { apiKeyFromEnv } from "../environment";
import { Backend, BACKENDS } from "../../protocol/protocol";
import { openRemoteModel, RemoteModel } from "../remote/remoteModel";
import { choiceOption, intOption, OptionValues, stringOption, UsageError } from "../util/options";

export { BACKENDS };
export type { Backend };

export const BACKEND_OPTIONS = {
  backend: { type: "string" },
  server: { type: "string" },
  "server-model": { type: "string" },
  "max-requests": { type: "string" },
} as const;

/** The flags' help lines, the descriptions starting at column `width`. */
export function backendHelp(width: number): string {
  const line = (flag: string, text: string) => `  ${flag.padEnd(width - 2)} ${text}`;
  return [
    line("--backend local|openai", "run the model here (default), or steer one on an OpenAI-compatible server"),
    line("--server URL", "the server's base URL, e.g. http://127.0.0.1:8080 (implies --backend openai;"),
    line("", "an API key comes from OPENAI_API_KEY)"),
    line("--server-model NAME", "the served model's name, as the server lists it (vLLM and SGLang check it)"),
    line("--max-requests N", "HTTP requests in flight at once, 1 to 1024 (default 8)"),
  ].join("\n");
}

/** Flags that choose how a local model runs: meaningless on a server. */
const LOCAL_ONLY = ["device", "dtype", "onnx-file", "threads"];

/**
 * The server model the flags ask for, opened (tokenizer read, URL checked, no request made), or
 * undefined for the local backend. `--model` names the tokenizer's folder or Hub id; unset, the server
 * formats the prompt.
 */
export function remoteModelOption(values: OptionValues, onRetry?: (line: string) => void): RemoteModel | undefined {
  const server = stringOption(values, "server");
  const backend = choiceOption<Backend>(values, "backend", BACKENDS, server !== undefined ? "openai" : "local");
  if (backend === "local") {
    for (const flag of ["server", "server-model", "max-requests"])
      if (values[flag] !== undefined) throw new UsageError(`--${flag} is for --backend openai; the local backend runs the model here`);
    return undefined;
  }
  if (server === undefined) throw new UsageError("--backend openai needs --server URL (the server's base URL, e.g. http://127.0.0.1:8080)");
  for (const flag of LOCAL_ONLY)
    if (values[flag] !== undefined)
      throw new UsageError(`--${flag} chooses how a local model runs; with --backend openai the server runs it`);
  return openRemoteModel({
    url: server,
    serverModel: stringOption(values, "server-model"),
    tokenizer: stringOption(values, "model"),
    apiKey: apiKeyFromEnv(),
    maxConcurrent: intOption(values, "max-requests", 8, 1, 1024),
    onRetry: onRetry && ((n) => onRetry(`${n.url}: ${n.reason}; retrying in ${(n.delayMs / 1000).toFixed(1)} s (try ${n.attempt + 1})`)),
  });
}
