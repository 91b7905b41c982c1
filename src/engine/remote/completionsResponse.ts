/**
 * Reading `/v1/completions` answers into lines: each choice's text, the token ids of that text when the
 * server gives them, and why it ended. Two logprobs shapes are read:
 *
 * - llama.cpp's chat shape, `logprobs.content[{id, token, logprob}]`: ids and token texts. Its
 *   finish_reason is "stop" both for an EOS and for a stop string; the stop string is cut from the text
 *   and is not in the logprobs, while an EOS is their last entry (with the text ""). So an EOS is told
 *   by the last id; without logprobs the two cannot be told apart and "stop" is assumed.
 * - The legacy shape vLLM (and SGLang) return, `logprobs.tokens` (token texts, or "token_id:N" with
 *   vLLM's `return_tokens_as_token_ids`), `token_logprobs`; ids also from a choice's `token_ids`
 *   (vLLM's `return_token_ids`). vLLM says why in `stop_reason`: null for an EOS, the stop string, or
 *   the stop token id. Its ids run past the text: they include the token that held the stop string.
 *   SGLang names the EOS id or the stop string in `matched_stop`.
 *
 * Token ids are kept only when they are known to spell the returned text: the token texts, less a
 * trailing EOS, joined must equal the text up to some prefix of the ids (the rest held the stop string),
 * or, without token texts, the last id is one of the request's `stopTokenIds` (or the ids were never
 * past the text). Otherwise `tokens` is undefined and the caller tokenizes `text` itself.
 */
import { MalformedResponseError } from "./retry";

/** Why a line ended: the model's EOS, a stop string (the line end), or `max_tokens`. */
export type LineFinish = "eos" | "stop" | "length";

export interface LineChoice {
  /** The text generated, without the stop string and without the EOS. */
  text: string;
  /** The ids of `text`, or undefined when the server did not give ids known to spell it. */
  tokens?: number[];
  /** The text of each of `tokens`, when the server gave them (they join to `text`). */
  pieces?: string[];
  finish: LineFinish;
}

export interface ParseOptions {
  /** The model's EOS ids (an EOS is dropped from `tokens` and makes finish "eos"). */
  eosTokenIds: readonly number[];
  /** Ids whose whole text is a stop string (the newline token): lets ids without texts be cut at the stop. */
  stopTokenIds?: readonly number[];
}

interface Entry {
  id?: number;
  piece?: string;
}

interface RawChoice {
  index: number;
  text: string;
  finish_reason: unknown;
  stop_reason?: unknown;
  matched_stop?: unknown;
  token_ids?: unknown;
  logprobs?: unknown;
}

/** The choices of a completions answer in `index` order, checked for shape. */
export function rawChoices(json: unknown, expected: number): RawChoice[] {
  const choices = (json as { choices?: unknown } | null)?.choices;
  if (!Array.isArray(choices)) throw new MalformedResponseError("no choices list");
  if (choices.length !== expected) throw new MalformedResponseError(`${choices.length} choices, ${expected} asked for`);
  const out: RawChoice[] = new Array(expected);
  for (const c of choices as RawChoice[]) {
    if (!c || typeof c !== "object" || typeof c.text !== "string") throw new MalformedResponseError("a choice without text");
    if (!Number.isInteger(c.index) || c.index < 0 || c.index >= expected || out[c.index])
      throw new MalformedResponseError(`a choice with index ${String(c.index)}`);
    out[c.index] = c;
  }
  return out;
}

export function parseChoice(choice: RawChoice, options: ParseOptions): LineChoice {
  const entries = logprobEntries(choice);
  const eos = (id: number | undefined) => id !== undefined && options.eosTokenIds.includes(id);
  const lastIsEos = entries.length > 0 && eos(entries[entries.length - 1].id);
  let finish: LineFinish;
  if (choice.finish_reason === "length") finish = lastIsEos ? "eos" : "length";
  else if (choice.finish_reason === "stop") {
    if ("stop_reason" in choice) {
      const why = choice.stop_reason;
      finish = why === null || why === undefined || (typeof why === "number" && eos(why)) ? "eos" : "stop";
    } else if (typeof choice.matched_stop === "number" || typeof choice.matched_stop === "string") {
      // SGLang (from its source, not run here): the EOS id or the stop string matched.
      finish = typeof choice.matched_stop === "number" && eos(choice.matched_stop) ? "eos" : "stop";
    } else finish = lastIsEos ? "eos" : "stop";
  } else throw new MalformedResponseError(`finish_reason ${JSON.stringify(choice.finish_reason)}`);
  const kept = lastIsEos ? entries.slice(0, -1) : entries;
  return { text: choice.text, ...spelling(kept, choice.text, finish, options), finish };
}

/** The ids of `entries` that spell `text` (with their texts, where given), or neither when that is not known. */
function spelling(entries: Entry[], text: string, finish: LineFinish, options: ParseOptions): Pick<LineChoice, "tokens" | "pieces"> {
  if (!entries.length) return text === "" && finish !== "length" ? { tokens: [], pieces: [] } : {};
  if (entries.some((e) => e.id === undefined)) return {};
  const ids = entries.map((e) => e.id!);
  if (entries.every((e) => e.piece !== undefined)) {
    // The longest prefix of the pieces that joins to the text (a stop token's piece follows it).
    let joined = "";
    let match = text === "" ? 0 : -1;
    for (let i = 0; i < entries.length && joined.length <= text.length; i++) {
      joined += entries[i].piece;
      if (joined === text) match = i + 1;
    }
    return match < 0 ? {} : { tokens: ids.slice(0, match), pieces: entries.slice(0, match).map((e) => e.piece!) };
  }
  // Ids without texts (vLLM's "token_id:N"): cut a whole stop token, else trust them only without a stop string.
  if (finish === "stop") {
    const last = ids[ids.length - 1];
    return options.stopTokenIds?.includes(last) ? { tokens: ids.slice(0, -1) } : {};
  }
  return { tokens: ids };
}

const TOKEN_ID = /^token_id:(\d+)$/;

/** The generated tokens: ids and texts, where the answer has them. */
function logprobEntries(choice: RawChoice): Entry[] {
  const lp = choice.logprobs as { content?: unknown; tokens?: unknown } | null | undefined;
  if (lp && Array.isArray(lp.content)) {
    return (lp.content as { id?: unknown; token?: unknown }[]).map((c) => ({
      id: Number.isInteger(c?.id) ? (c.id as number) : undefined,
      piece: typeof c?.token === "string" ? c.token : undefined,
    }));
  }
  const ids =
    Array.isArray(choice.token_ids) && choice.token_ids.every((t) => Number.isInteger(t)) ? (choice.token_ids as number[]) : undefined;
  if (lp && Array.isArray(lp.tokens)) {
    const tokens = lp.tokens as unknown[];
    return tokens.map((t, i) => {
      const m = typeof t === "string" ? TOKEN_ID.exec(t) : null;
      if (m) return { id: Number(m[1]) };
      return { id: ids && ids.length === tokens.length ? ids[i] : undefined, piece: typeof t === "string" ? t : undefined };
    });
  }
  return ids ? ids.map((id) => ({ id })) : [];
}
