/**
 * One JSON POST to an inference server with bounded retries: connection refused or reset, a timeout
 * (per try, the body included), 429 (after its Retry-After), 5xx and a malformed body are retried with
 * exponential backoff and jitter; any other 4xx fails at once. A caller's abort ends it at once, in
 * flight or between tries, with the signal's reason (an AbortError unless the caller gave another), and
 * nothing is retried after it. Every other failure is one RemoteServerError naming the URL (its user
 * and password removed) and what happened; the API key is sent only as a header and never appears in an
 * error or in the retry notes.
 */
import { Semaphore } from "./semaphore";

export interface RetryPolicy {
  /** Tries in all, the first included. */
  maxTries: number;
  /** How long one try may take, the response body included. */
  timeoutMs: number;
  /** The wait before the first retry; it doubles each retry up to `maxBackoffMs`, less a random part of up to half. */
  backoffMs: number;
  maxBackoffMs: number;
  /** The longest Retry-After honoured; a 429 asking for longer fails at once. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxTries: 4,
  timeoutMs: 60000,
  backoffMs: 250,
  maxBackoffMs: 8000,
  maxRetryAfterMs: 60000,
};

/** A failed try that will be retried, for the caller's log (no key, no body sent). */
export interface RetryNote {
  url: string;
  /** The try that failed, from 1. */
  attempt: number;
  reason: string;
  delayMs: number;
}

/** A server that could not be used: the URL (never the key) and what happened. */
export class RemoteServerError extends Error {
  constructor(
    readonly url: string,
    /** What the last try got, e.g. "503 Service Unavailable", "connection refused (ECONNREFUSED)". */
    readonly reason: string,
    readonly tries: number,
    /** The HTTP status of the last try, when it got one. */
    readonly status?: number,
  ) {
    super(`${url}: ${reason}${tries > 1 ? ` after ${tries} tries` : ""}`);
    this.name = new.target.name;
  }
}

/** The body did not have the expected shape (retried like a 5xx). */
export class MalformedResponseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

export interface PostJsonOptions<T> {
  /** Sent as `Authorization: Bearer …`. */
  apiKey?: string;
  policy: RetryPolicy;
  /** Held for each try (not while waiting to retry). */
  limit?: Semaphore;
  signal?: AbortSignal;
  /** Checks and converts the parsed body; throwing MalformedResponseError (or anything) makes the try a malformed one. */
  parse: (json: unknown) => T;
  onRetry?: (note: RetryNote) => void;
  /** For tests: the random number behind the jitter. */
  random?: () => number;
}

/** `url` with any user and password removed: what errors and notes name. */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    return u.toString();
  } catch {
    return url;
  }
}

type Outcome<T> = { ok: true; value: T } | { ok: false; retry: boolean; reason: string; status?: number; retryAfterMs?: number };

export async function postJson<T>(url: string, body: unknown, options: PostJsonOptions<T>): Promise<T> {
  return requestJson(url, JSON.stringify(body), options);
}

/** GET `url` with postJson's retries and checks (a server's `/props`, say). */
export function getJson<T>(url: string, options: PostJsonOptions<T>): Promise<T> {
  return requestJson(url, undefined, options);
}

/** POST `payload`, or GET without one, retrying as the module's comment says. */
async function requestJson<T>(url: string, payload: string | undefined, options: PostJsonOptions<T>): Promise<T> {
  const { policy, signal } = options;
  const shown = displayUrl(url);
  const random = options.random ?? Math.random;
  const headers: Record<string, string> = { accept: "application/json" };
  if (payload !== undefined) headers["content-type"] = "application/json";
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    const release = options.limit ? await options.limit.acquire(signal) : () => undefined;
    let outcome: Outcome<T>;
    try {
      outcome = await tryOnce(url, payload, headers, options, signal);
    } finally {
      release();
    }
    if (outcome.ok) return outcome.value;
    if (!outcome.retry || attempt >= policy.maxTries) throw new RemoteServerError(shown, outcome.reason, attempt, outcome.status);
    let delayMs: number;
    if (outcome.retryAfterMs !== undefined) {
      if (outcome.retryAfterMs > policy.maxRetryAfterMs)
        throw new RemoteServerError(
          shown,
          `${outcome.reason}, Retry-After ${Math.ceil(outcome.retryAfterMs / 1000)} s is too long`,
          attempt,
          outcome.status,
        );
      delayMs = outcome.retryAfterMs;
    } else {
      const full = Math.min(policy.maxBackoffMs, policy.backoffMs * 2 ** (attempt - 1));
      delayMs = Math.round(full * (1 - random() / 2));
    }
    options.onRetry?.({ url: shown, attempt, reason: outcome.reason, delayMs });
    await sleep(delayMs, signal);
  }
}

async function tryOnce<T>(
  url: string,
  payload: string | undefined,
  headers: Record<string, string>,
  options: PostJsonOptions<T>,
  signal: AbortSignal | undefined,
): Promise<Outcome<T>> {
  const timeout = AbortSignal.timeout(options.policy.timeoutMs);
  const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
  let status: number | undefined;
  try {
    const res = await fetch(url, { method: payload === undefined ? "GET" : "POST", headers, body: payload, signal: both });
    status = res.status;
    const text = await res.text();
    const statusLine = `${res.status} ${res.statusText}`.trim();
    if (res.status === 429)
      return { ok: false, retry: true, reason: statusLine, status, retryAfterMs: retryAfter(res.headers.get("retry-after")) };
    if (res.status >= 500) return { ok: false, retry: true, reason: statusLine, status };
    if (res.status < 200 || res.status >= 300) return { ok: false, retry: false, reason: `${statusLine}: ${serverMessage(text)}`, status };
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return { ok: false, retry: true, reason: `malformed JSON in a ${res.status} response (${text.length} bytes)`, status };
    }
    try {
      return { ok: true, value: options.parse(json) };
    } catch (e) {
      return { ok: false, retry: true, reason: `unexpected response: ${e instanceof Error ? e.message : String(e)}`, status };
    }
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    if (timeout.aborted) return { ok: false, retry: true, reason: `no response within ${options.policy.timeoutMs} ms`, status };
    return { ok: false, retry: true, reason: networkReason(e), status };
  }
}

/** Retry-After as milliseconds: seconds, or an HTTP date; undefined when absent or unreadable. */
export function retryAfter(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === "") return undefined;
  if (/^\s*\d+(\.\d+)?\s*$/.test(header)) return Math.round(Number(header) * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The error message of a 4xx body (OpenAI's `{error: {message}}`, else the text), on one short line. */
function serverMessage(text: string): string {
  let message = text;
  try {
    const json = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
    const m = typeof json.error === "string" ? json.error : (json.error?.message ?? json.message);
    if (typeof m === "string") message = m;
  } catch {
    // not JSON: the text itself
  }
  message = message.replace(/\s+/g, " ").trim();
  return message.length > 300 ? `${message.slice(0, 300)}…` : message || "(empty body)";
}

const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  EPIPE: "connection closed",
  UND_ERR_SOCKET: "connection closed by the server",
  UND_ERR_CLOSED: "connection closed",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host lookup failed",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ETIMEDOUT: "connection timed out",
  UND_ERR_CONNECT_TIMEOUT: "connection timed out",
};

/** What a fetch that threw ran into: undici hides the socket error in `cause`. */
function networkReason(e: unknown): string {
  const cause = (e as { cause?: { code?: string; message?: string } } | undefined)?.cause;
  const code = cause?.code;
  if (code) return `${NETWORK_CODES[code] ?? cause?.message ?? "network error"} (${code})`;
  return cause?.message ?? (e instanceof Error ? e.message : String(e));
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const done = () => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
