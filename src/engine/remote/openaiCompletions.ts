/**
 * The client a remote proposal backend steps particles with: the next line of each of K token-id
 * prefixes from an OpenAI-compatible `/v1/completions` server (llama.cpp's llama-server, vLLM, SGLang).
 *
 * Requests are as few as the API allows: identical prefixes (copies after a resampling) are sent once
 * with `n` = their number of copies and the n choices fanned back to the copies in order; prefixes with
 * the same number of copies share one request as a list of prompts (`n` is per request), so K distinct
 * prefixes are one request and a resampled population is one request per distinct copy count. On
 * llama.cpp this is also the fast way: the n choices share one prompt evaluation, while copies sent as
 * separate prompts each evaluate theirs (measured on the shipped model, 40 problems of `eval`, 4 at
 * once: 23 s with n, 53 s with copies as prompts).
 *
 * Prompts are token ids, the route that always matches the engine's tokenizer, and servers use them
 * verbatim: the caller's prefix must start with the model's BOS when the model wants one (the engine's
 * `encodeProblem` prompt has it); nothing is added here. Sampling is the model's own distribution:
 * `top_p: 1, min_p: 0` and top-k off (llama.cpp's defaults truncate: top_k 40, top_p 0.95, min_p
 * 0.05). Top-k off is `top_k: -1` by default, which llama.cpp (k ≤ 0), vLLM (0 or -1; before 0.8 only
 * -1) and SGLang (-1) all read as off; `topK: null` leaves it out (TGI rejects k < 1).
 *
 * One client holds one concurrency limit (a semaphore over HTTP requests in flight) shared by all its
 * calls, so many solves overlap (and the server batches them) without flooding it. Faults and retries:
 * retry.ts. The API key goes only into the Authorization header.
 */
import {
  displayUrl,
  DEFAULT_RETRY_POLICY,
  getJson,
  MalformedResponseError,
  postJson,
  RemoteServerError,
  RetryNote,
  RetryPolicy,
} from "./retry";
import { LineChoice, parseChoice, rawChoices } from "./completionsResponse";
import { Semaphore } from "./semaphore";

export type { LineChoice, LineFinish } from "./completionsResponse";
export { RemoteServerError };

export interface CompletionsClientOptions {
  /** The server's base URL: `http://host:8000` or `http://host:8000/v1` (`/v1/completions` is added). */
  url: string;
  /** The served model's name (vLLM and SGLang check it; llama.cpp ignores it). */
  model?: string;
  /** Sent as `Authorization: Bearer …` (the caller reads OPENAI_API_KEY or the editor's secret); never logged. */
  apiKey?: string;
  /** HTTP requests in flight at once, over all calls of this client (default 8). */
  maxConcurrent?: number;
  /** The most choices (prompts × n) one request asks for; larger groups are split (default 256). */
  maxChoicesPerRequest?: number;
  /** Overrides of the retry policy (tries, per-try timeout, backoff). */
  retry?: Partial<RetryPolicy>;
  /** The `top_k` that means off (default -1), or null to leave `top_k` out. */
  topK?: number | null;
  /** More body keys, sent as given (e.g. vLLM's `return_token_ids: true`, a `min_tokens`). */
  extraBody?: Record<string, unknown>;
  /** Told of each failed try that will be retried (the URL without credentials, never the key). */
  onRetry?: (note: RetryNote) => void;
}

export interface LinesRequest {
  /** K token-id prefixes, each starting with BOS when the model wants one (sent verbatim). */
  prompts: readonly (readonly number[])[];
  /** Tokens of one line at most. */
  maxTokens: number;
  /** 0 is greedy. */
  temperature: number;
  /**
   * Makes a request's samples reproducible on servers that support it (llama.cpp, vLLM). Vary it per
   * step and per solve: the same seed and prompt give the same line again. The n copies of one prompt
   * are separate draws either way; different prompts of one request may share the seed's stream
   * (llama.cpp seeds each slot alike), so leave it out when independence across particles matters more
   * than replay.
   */
  seed?: number;
  /** Default ["\n"]: a line. */
  stop?: readonly string[];
  /** The model's EOS ids: tells an EOS from a stop string on llama.cpp and drops it from `tokens`. */
  eosTokenIds: readonly number[];
  /** Ids whose whole text is a stop string (the newline token), for servers that return ids without texts. */
  stopTokenIds?: readonly number[];
}

export interface CallOptions {
  /** Cancels the requests in flight at once; nothing is retried after it. */
  signal?: AbortSignal;
}

export interface LinesResult {
  /** One per prompt, in the prompts' order. */
  lines: LineChoice[];
  /** HTTP requests that answered (retries not counted). */
  requests: number;
}

export class CompletionsClient {
  readonly endpoint: string;
  private readonly limit: Semaphore;
  private readonly policy: RetryPolicy;

  constructor(private readonly options: CompletionsClientOptions) {
    this.endpoint = completionsUrl(options.url);
    this.limit = new Semaphore(options.maxConcurrent ?? 8);
    this.policy = { ...DEFAULT_RETRY_POLICY, ...options.retry };
  }

  /** What to show for this client: the endpoint without credentials and the model. */
  describe(): string {
    return `${displayUrl(this.endpoint)}${this.options.model ? ` (${this.options.model})` : ""}`;
  }

  /**
   * The server's own token ids of `text` (no special tokens added), from the `/tokenize` endpoint that
   * llama.cpp and vLLM serve beside the API; undefined where the server has none (404/405: TGI, a
   * hosted API). Both servers' field names are sent: llama.cpp reads `content`, vLLM `prompt`.
   */
  async tokenize(text: string, call: CallOptions = {}): Promise<number[] | undefined> {
    const body = {
      ...(this.options.model !== undefined && { model: this.options.model }),
      content: text,
      prompt: text,
      add_special: false,
      add_special_tokens: false,
    };
    return this.atRoot("/tokenize", body, tokenIds, call);
  }

  /**
   * A JSON request to an endpoint the server serves beside the API, at its root (`/tokenize`,
   * llama.cpp's `/props` and `/apply-template`, vLLM's `/detokenize`): POST `body`, or GET when it is
   * undefined, with the client's key, limit and retries. Undefined where the server has no such
   * endpoint (404/405: another server, a hosted API).
   */
  async atRoot<T>(path: string, body: unknown, parse: (json: unknown) => T, call: CallOptions = {}): Promise<T | undefined> {
    const url = `${rootUrl(this.options.url)}${path}`;
    const options = {
      apiKey: this.options.apiKey,
      policy: this.policy,
      limit: this.limit,
      signal: call.signal,
      onRetry: this.options.onRetry,
      parse,
    };
    try {
      return await (body === undefined ? getJson(url, options) : postJson(url, body, options));
    } catch (e) {
      if (e instanceof RemoteServerError && (e.status === 404 || e.status === 405)) return undefined;
      throw e;
    }
  }

  /** The served model's name, as requests send it (undefined: the server's only model). */
  get model(): string | undefined {
    return this.options.model;
  }

  /** Requests in flight now (for tests and status). */
  get inFlight(): number {
    return this.limit.inUse;
  }

  /** The next line of each prompt: see the module's comment. */
  async completeLines(request: LinesRequest, call: CallOptions = {}): Promise<LinesResult> {
    const { prompts, maxTokens, temperature } = request;
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new RangeError(`maxTokens must be a positive integer, got ${maxTokens}`);
    if (!(temperature >= 0)) throw new RangeError(`temperature must be >= 0, got ${temperature}`);
    const batches = planRequests(prompts, this.options.maxChoicesPerRequest ?? 256);
    const lines: LineChoice[] = new Array(prompts.length);
    const inner = new AbortController();
    const onAbort = () => inner.abort(call.signal!.reason);
    call.signal?.addEventListener("abort", onAbort, { once: true });
    if (call.signal?.aborted) onAbort();
    try {
      // The first failure cancels the other requests of this call.
      await Promise.all(
        batches.map(async (batch) => {
          try {
            const choices = await this.send(request, batch, inner.signal);
            batch.prompts.forEach((group, g) => group.forEach((k, copy) => (lines[k] = choices[g * batch.n + copy])));
          } catch (e) {
            inner.abort(e);
            throw e;
          }
        }),
      );
    } finally {
      call.signal?.removeEventListener("abort", onAbort);
    }
    return { lines, requests: batches.length };
  }

  private send(request: LinesRequest, batch: Batch, signal: AbortSignal): Promise<LineChoice[]> {
    const { topK, model, extraBody } = this.options;
    const body: Record<string, unknown> = {
      ...(model !== undefined && { model }),
      prompt: batch.prompts.map((group) => request.prompts[group[0]]),
      n: batch.n,
      max_tokens: request.maxTokens,
      temperature: request.temperature,
      ...(request.seed !== undefined && { seed: request.seed }),
      stop: [...(request.stop ?? ["\n"])],
      ...(topK !== null && { top_k: topK ?? -1 }),
      top_p: 1,
      min_p: 0,
      logprobs: 1,
      stream: false,
      ...extraBody,
    };
    const expected = batch.prompts.length * batch.n;
    const parse = { eosTokenIds: request.eosTokenIds, stopTokenIds: request.stopTokenIds };
    return postJson(this.endpoint, body, {
      apiKey: this.options.apiKey,
      policy: this.policy,
      limit: this.limit,
      signal,
      onRetry: this.options.onRetry,
      parse: (json) => rawChoices(json, expected).map((c) => parseChoice(c, parse)),
    });
  }
}

/** `/v1/completions` under a base URL given with or without `/v1`. */
export function completionsUrl(base: string): string {
  const trimmed = base.replace(/\/+$/, "");
  if (/\/v1\/completions$/.test(trimmed)) return trimmed;
  return /\/v1$/.test(trimmed) ? `${trimmed}/completions` : `${trimmed}/v1/completions`;
}

/** The server's root under a base URL given with or without `/v1` (llama.cpp and vLLM serve `/tokenize` there, not under /v1). */
export function rootUrl(base: string): string {
  return base.replace(/\/+$/, "").replace(/\/v1(\/completions)?$/, "");
}

/** `/tokenize` at the server's root. */
export function tokenizeUrl(base: string): string {
  return `${rootUrl(base)}/tokenize`;
}

/** A `/tokenize` answer's list: ids (vLLM), or llama.cpp's {id, piece} (with `with_pieces`). */
export function tokenEntries(json: unknown): { id: number; piece?: string }[] {
  const tokens = (json as { tokens?: unknown } | null)?.tokens;
  if (!Array.isArray(tokens)) throw new MalformedResponseError("no tokens list");
  return tokens.map((t) => {
    const entry: { id?: unknown; piece?: unknown } = typeof t === "object" && t !== null ? t : { id: t };
    if (!Number.isInteger(entry.id)) throw new MalformedResponseError("a token that is not an id");
    return { id: entry.id as number, ...(typeof entry.piece === "string" && { piece: entry.piece }) };
  });
}

const tokenIds = (json: unknown): number[] => tokenEntries(json).map((e) => e.id);

/** One request: distinct prompts (each the particle indices sharing it, in order), each asked for `n` choices. */
export interface Batch {
  prompts: number[][];
  n: number;
}

/**
 * Groups K prompts into requests: identical prompts become one prompt with n = copies; prompts with the
 * same number of copies share a request, split so that none asks for more than `maxChoices` choices.
 */
export function planRequests(prompts: readonly (readonly number[])[], maxChoices: number): Batch[] {
  const byKey = new Map<string, number[]>();
  prompts.forEach((p, k) => {
    const key = p.join(",");
    const group = byKey.get(key);
    if (group) group.push(k);
    else byKey.set(key, [k]);
  });
  const byCopies = new Map<number, number[][]>();
  for (const group of byKey.values()) {
    const list = byCopies.get(group.length);
    if (list) list.push(group);
    else byCopies.set(group.length, [group]);
  }
  const batches: Batch[] = [];
  for (const [n, groups] of byCopies) {
    const per = Math.max(1, Math.floor(maxChoices / n));
    for (let i = 0; i < groups.length; i += per) batches.push({ prompts: groups.slice(i, i + per), n });
  }
  return batches;
}

/** One call with a client made for it (a shared client keeps one concurrency limit over many calls). */
export function completeLines(request: LinesRequest, options: CompletionsClientOptions & CallOptions): Promise<LinesResult> {
  return new CompletionsClient(options).completeLines(request, { signal: options.signal });
}
