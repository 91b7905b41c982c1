/**
 * A model served by an OpenAI-compatible inference server (llama.cpp's llama-server, vLLM, SGLang, TGI),
 * as the engine steers it: the prompt is the model's chat template applied here from its tokenizer
 * files when the user names them (so the server sees exactly the tokens the local backend would), else
 * the server's own formatting (remoteText.ts); the lines come from `/v1/completions`, and the SMC loop
 * (smc/lineSmc.ts) weighs and resamples them here.
 *
 * One RemoteModel (one CompletionsClient, one concurrency limit) serves every solve of an engine
 * process, so overlapping solves (eval, Solve All) share the limit and the server batches them.
 */
import type { LineProposer, ProposedLine } from "../smc/lineSmc";
import { defaultModelDir, openTokenizerFolder } from "../lm/model/modelFolder";
import { TextTokenizer } from "../lm/model/tokenizer";
import { resolveModelArgument } from "../hub/cache";
import { CompletionsClient, LineChoice } from "./openaiCompletions";
import type { RetryNote, RetryPolicy } from "./retry";
import { UsageError } from "../util/options";
import { RemoteText, TokenizerFilesText } from "./remoteText";
import { ServerFormatting } from "./serverFormatting";

export interface RemoteSettings {
  /** The server's base URL (`http://host:8000` or `…/v1`). */
  url: string;
  /** The served model's name, as the server lists it (vLLM checks it; llama.cpp ignores it). */
  serverModel?: string;
  /** A model folder or Hub id whose tokenizer files (and chat template) encode the prompt; unset: the server formats it. */
  tokenizer?: string;
  /** Never logged, never in a record. */
  apiKey?: string;
  /** HTTP requests in flight at once over every solve of this model (default 8). */
  maxConcurrent?: number;
  retry?: Partial<RetryPolicy>;
  onRetry?: (note: RetryNote) => void;
}

export interface RemoteModel {
  readonly backend: "openai";
  /** How problems become prompt ids and the server's ids become text. */
  text: RemoteText;
  client: CompletionsClient;
  /** What the user sees: the server's URL (no credentials) and the served model's name. */
  server: string;
}

/** Checks the URL and opens the tokenizer files, if any; no request is made until the first solve. */
export function openRemoteModel(settings: RemoteSettings): RemoteModel {
  checkServerUrl(settings.url);
  const client = new CompletionsClient({
    url: settings.url,
    model: settings.serverModel,
    apiKey: settings.apiKey,
    maxConcurrent: settings.maxConcurrent,
    retry: settings.retry,
    onRetry: settings.onRetry,
    // Without tokenizer files the ids of each line come from the server: vLLM gives them only when asked.
    ...(settings.tokenizer === undefined && { extraBody: { return_token_ids: true } }),
  });
  let text: RemoteText;
  if (settings.tokenizer === undefined) text = new ServerFormatting(client);
  else {
    const folder = openTokenizerFolder(resolveModelArgument(settings.tokenizer));
    text = new TokenizerFilesText(folder, TextTokenizer.fromFolder(folder), client);
  }
  return { backend: "openai", text, client, server: client.describe() };
}

/**
 * Where a server model's default twist is looked for: its tokenizer files' folder, else the shipped
 * model's (its line verifier reads text, and any model's text the same way).
 */
export function remoteTwistFolder(model: RemoteModel): { dir: string } {
  return model.text.folder ?? { dir: defaultModelDir() };
}

/** `model` with `system` as the system message of every prompt (blank: none); per request, sharing the client. */
export function remoteWithSystemPrompt(model: RemoteModel, system: string | undefined): RemoteModel {
  const text = model.text.withSystemPrompt(system);
  return text === model.text ? model : { ...model, text };
}

/** An http(s) URL, or one clear line saying what is wrong with it. */
export function checkServerUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--server ${JSON.stringify(url)} is not a URL: give the server's base URL, e.g. http://127.0.0.1:8080`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:")
    throw new UsageError(`--server ${parsed.protocol}… is not an http(s) URL: give the server's base URL, e.g. http://127.0.0.1:8080`);
}

/**
 * Lines from the server for one solve: the model's own next line of each prefix (temperature 1, the
 * full distribution, `stop` at the line break), turned into the engine's tokens. A line cut at the stop
 * string gets the line break appended, as the local model would have drawn it.
 */
export function remoteLineProposer(model: RemoteModel): LineProposer {
  const { client, text } = model;
  const toLine = (c: LineChoice): ProposedLine => {
    const tokens = text.lineTokens(c);
    if (c.finish === "stop") return { tokens: [...tokens, ...text.lineBreak], ends: "line" };
    return { tokens, ends: c.finish === "eos" ? "eos" : "length" };
  };
  return {
    async proposeLines(prefixes, maxTokens, signal) {
      await text.ready(signal);
      const lineBreak = text.lineBreak;
      const { lines, requests } = await client.completeLines(
        {
          prompts: prefixes,
          maxTokens,
          temperature: 1,
          stop: ["\n"],
          eosTokenIds: text.eosTokenIds,
          stopTokenIds: lineBreak.length === 1 ? lineBreak : [],
        },
        { signal },
      );
      return { lines: lines.map(toLine), requests };
    },
  };
}
