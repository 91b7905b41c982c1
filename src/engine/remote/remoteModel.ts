/**
 * A model served by an OpenAI-compatible inference server (llama.cpp's llama-server, vLLM, SGLang, TGI),
 * as the engine steers it: the prompt is encoded here from the model's tokenizer files (its chat
 * template applied locally, so the server sees exactly the tokens the local backend would), the lines
 * come from `/v1/completions`, and the SMC loop (smc/lineSmc.ts) weighs and resamples them here.
 *
 * One RemoteModel (one CompletionsClient, one concurrency limit) serves every solve of an engine
 * process, so overlapping solves (eval, Solve All) share the limit and the server batches them.
 */
import type { LineProposer, ProposedLine } from "../smc/lineSmc";
import { TokenizerFolder, defaultModelDir, openTokenizerFolder } from "../lm/model/modelFolder";
import { TextTokenizer } from "../lm/model/tokenizer";
import { resolveModelArgument } from "../hub/cache";
import { CompletionsClient, LineChoice } from "./openaiCompletions";
import type { RetryNote, RetryPolicy } from "./retry";
import { UsageError } from "../util/options";
import { InputError } from "../util/errors";
import { synthesize } from "../math/problems";

export interface RemoteSettings {
  /** The server's base URL (`http://host:8000` or `…/v1`). */
  url: string;
  /** The served model's name, as the server lists it (vLLM checks it; llama.cpp ignores it). */
  serverModel?: string;
  /** A model folder or Hub id whose tokenizer files (and chat template) encode the prompt; default: the shipped model's. */
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
  folder: TokenizerFolder;
  tokenizer: TextTokenizer;
  client: CompletionsClient;
  /** What the user sees: the server's URL (no credentials) and the served model's name. */
  server: string;
  /** The tokenizer check (checkTokenizer), made once before the first lines are asked for. */
  tokenizerCheck?: Promise<void>;
}

/** Checks the URL and opens the tokenizer; no request is made until the first solve. */
export function openRemoteModel(settings: RemoteSettings): RemoteModel {
  checkServerUrl(settings.url);
  const dir = settings.tokenizer === undefined ? defaultModelDir() : resolveModelArgument(settings.tokenizer);
  const folder = openTokenizerFolder(dir);
  const tokenizer = TextTokenizer.fromFolder(folder);
  const client = new CompletionsClient({
    url: settings.url,
    model: settings.serverModel,
    apiKey: settings.apiKey,
    maxConcurrent: settings.maxConcurrent,
    retry: settings.retry,
    onRetry: settings.onRetry,
  });
  return { backend: "openai", folder, tokenizer, client, server: client.describe() };
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

/** A text in the words the shipped model knows (a generated problem and a line of arithmetic) that any real tokenizer also splits its own way. */
const CHECK_TEXT = `${synthesize("train", 1, 20)[0].question}\n12 + 30 = 42\n#### 42`;

/**
 * Whether the server's model reads tokens as the local tokenizer writes them: token-id prompts from
 * another model's tokenizer are gibberish to it, and it would answer gibberish without an error. The
 * server tokenizes a text (`/tokenize`) and its ids must equal the local ones; a server without the
 * endpoint is trusted. Made once per model, before its first request; a failed check is retried next time.
 */
export function checkTokenizer(model: RemoteModel, signal?: AbortSignal): Promise<void> {
  model.tokenizerCheck ??= (async () => {
    const theirs = await model.client.tokenize(CHECK_TEXT, { signal });
    if (theirs === undefined) return;
    const ours = model.tokenizer.encode(CHECK_TEXT);
    const bos = model.folder.config.bosTokenId;
    const trimmed = theirs[0] === bos && ours[0] !== bos ? theirs.slice(1) : theirs;
    if (trimmed.length !== ours.length || trimmed.some((t, i) => t !== ours[i]))
      throw new InputError(
        `the server's model does not use ${model.folder.name}'s tokenizer (its /tokenize differs at token ${firstDifference(trimmed, ours)}): ` +
          `pass --model (or set twistedSmc.model to) the served model's folder or Hub id, whose tokenizer files encode the prompt`,
      );
  })().catch((e) => {
    model.tokenizerCheck = undefined;
    throw e;
  });
  return model.tokenizerCheck;
}

const firstDifference = (a: readonly number[], b: readonly number[]) => {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
};

/**
 * Lines from the server for one solve: the model's own next line of each prefix (temperature 1, the
 * full distribution, `stop` at the line break), turned into the engine's tokens. A line cut at the stop
 * string gets the tokenizer's line break appended, as the local model would have drawn it; a line the
 * server gave no ids for (or ids that do not spell its text) is encoded here from its text.
 */
export function remoteLineProposer(model: RemoteModel): LineProposer {
  const { client, tokenizer } = model;
  const lineBreak = tokenizer.encode("\n");
  const stopTokenIds = lineBreak.length === 1 ? lineBreak : [];
  const toLine = (c: LineChoice): ProposedLine => {
    const tokens = c.tokens ?? (c.text ? tokenizer.encode(c.text) : []);
    if (c.finish === "stop") return { tokens: [...tokens, ...lineBreak], ends: "line" };
    return { tokens, ends: c.finish === "eos" ? "eos" : "length" };
  };
  return {
    async proposeLines(prefixes, maxTokens, signal) {
      await checkTokenizer(model, signal);
      const { lines, requests } = await client.completeLines(
        { prompts: prefixes, maxTokens, temperature: 1, stop: ["\n"], eosTokenIds: tokenizer.eosTokenIds, stopTokenIds },
        { signal },
      );
      return { lines: lines.map(toLine), requests };
    },
  };
}
