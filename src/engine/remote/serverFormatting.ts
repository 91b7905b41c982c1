/**
 * The prompt formatted by the server itself, for a model whose tokenizer files the user has not given:
 * the server's chat template renders the problem, its tokenizer encodes it, and the text of the ids it
 * returns is the text it returns with them. Nothing of the model is read here.
 *
 * What is asked, and of which server (llama.cpp measured here; vLLM from its API reference, not run):
 * - the prompt: llama.cpp's `/apply-template` {messages} → {prompt}, then `/tokenize` of that text with
 *   the model's BOS added and special tokens parsed; else vLLM's `/tokenize` {messages,
 *   add_generation_prompt} → ids, and `/detokenize` for the text;
 * - once per model: llama.cpp's `/props` (the slot's context `n_ctx`, `eos_token`, the chat template,
 *   whose end-of-turn tokens also end a solution) and the ids of those tokens and of "\n" from
 *   `/tokenize`. vLLM has no `/props`: its context is the `max_model_len` its `/tokenize` returns, and
 *   an EOS is told by the completion's `stop_reason` (null), not by an id;
 * - each line's ids with their texts, from the completion's logprobs (llama.cpp: `content[{id, token}]`;
 *   vLLM: `tokens` texts and `token_ids` with `return_token_ids`, asked for on this path). The texts
 *   of every id seen are kept, and decoding joins them: the particles' text is the server's own text.
 *
 * A server that can do neither (TGI, a hosted API) is refused before the first line, with what to pass.
 */
import { basename } from "node:path";
import { CompletionsClient, LineChoice, tokenEntries } from "./openaiCompletions";
import { MalformedResponseError } from "./retry";
import type { RemotePrompt, RemoteText } from "./remoteText";
import { checkProblemLength, fitPrompt } from "../lm/model/contextWindow";
import { END_OF_TURN_TOKENS } from "../lm/model/tokenizer";
import { InputError } from "../util/errors";

/** What is known of the server's model once asked: shared by every view (withSystemPrompt) of one model. */
interface ServerModelFacts {
  /** Positions one request may use: llama.cpp's per-slot n_ctx, else vLLM's max_model_len once a prompt told it. */
  context?: number;
  eos: number[];
  lineBreak: number[];
  /** The model's name as llama.cpp's /props gives it (its file, or --alias). */
  alias?: string;
}

interface Shared {
  pieces: Map<number, string>;
  facts?: ServerModelFacts;
  asking?: Promise<ServerModelFacts>;
}

export class ServerFormatting implements RemoteText {
  readonly folder = undefined;

  constructor(
    private readonly client: CompletionsClient,
    private readonly system?: string,
    private readonly shared: Shared = { pieces: new Map() },
  ) {}

  get name(): string {
    return this.client.model ?? this.shared.facts?.alias ?? "the served model";
  }

  get eosTokenIds(): readonly number[] {
    return this.shared.facts?.eos ?? [];
  }

  get lineBreak(): readonly number[] {
    return this.shared.facts?.lineBreak ?? [];
  }

  async ready(signal?: AbortSignal): Promise<void> {
    this.shared.asking ??= this.askFacts(signal).catch((e) => {
      this.shared.asking = undefined;
      throw e;
    });
    this.shared.facts = await this.shared.asking;
  }

  async prompt(question: string, maxTokens: number, signal?: AbortSignal): Promise<RemotePrompt> {
    await this.ready(signal);
    const facts = this.shared.facts!;
    const content = question.trim();
    checkProblemLength(content, facts.context, this.name);
    const messages = [...(this.system ? [{ role: "system", content: this.system }] : []), { role: "user", content }];
    const formatted = (await this.llamaCppPrompt(messages, signal)) ?? (await this.vllmPrompt(messages, signal));
    if (!formatted)
      throw new InputError(
        `the server at ${this.client.describe()} does not format chats for a client (no /apply-template or /tokenize with messages): ` +
          `pass --model (or set twistedSmc.model to) the served model's folder or Hub id, whose tokenizer files encode the prompt`,
      );
    if (this.system && !formatted.text.includes(this.system))
      throw new InputError(`the server's chat template leaves the system prompt out: leave the system prompt empty`);
    return { ...fitPrompt(formatted.ids, maxTokens, formatted.context ?? facts.context, this.name), text: formatted.text };
  }

  lineTokens(line: LineChoice): number[] {
    if (line.tokens && line.pieces) {
      line.tokens.forEach((id, i) => this.shared.pieces.set(id, line.pieces![i]));
      return line.tokens;
    }
    if (line.text === "") return [];
    throw new InputError(
      `the server at ${this.client.describe()} returns no token ids with the texts of its lines (logprobs), which the engine needs ` +
        `without the model's tokenizer files: pass --model (or set twistedSmc.model to) the served model's folder or Hub id`,
    );
  }

  decode(tokens: readonly number[]): string {
    let text = "";
    for (const id of tokens) {
      const piece = this.shared.pieces.get(id);
      if (piece === undefined) throw new Error(`token ${id} came with no text from the server`);
      text += piece;
    }
    return text;
  }

  isEos(token: number): boolean {
    return this.eosTokenIds.includes(token);
  }

  isLineEnd(token: number): boolean {
    return this.shared.pieces.get(token)?.includes("\n") ?? false;
  }

  withSystemPrompt(system: string | undefined): RemoteText {
    const text = system?.trim() || undefined;
    return text === this.system ? this : new ServerFormatting(this.client, text, this.shared);
  }

  /** llama.cpp: its template renders the messages, its tokenizer encodes them (BOS added, special tokens read as such). */
  private async llamaCppPrompt(messages: object[], signal?: AbortSignal) {
    const text = await this.client.atRoot("/apply-template", { messages }, (json) => field(json, "prompt", "string"), { signal });
    if (text === undefined) return undefined;
    const ids = await this.tokenize(text, { addBos: true, special: true, signal });
    if (!ids) throw new MalformedResponseError("/apply-template without /tokenize");
    return { ids, text, context: undefined };
  }

  /** vLLM: its /tokenize applies the chat template itself; /detokenize gives the prompt's text. */
  private async vllmPrompt(messages: object[], signal?: AbortSignal) {
    const model = this.client.model;
    const body = { ...(model !== undefined && { model }), messages, add_generation_prompt: true, add_special_tokens: false };
    const told = await this.client.atRoot(
      "/tokenize",
      body,
      (json) => ({ ids: idList(json), context: optionalInt(json, "max_model_len") }),
      {
        signal,
      },
    );
    if (told === undefined) return undefined;
    const text = await this.client.atRoot(
      "/detokenize",
      { ...(model !== undefined && { model }), tokens: told.ids },
      (json) => field(json, "prompt", "string"),
      { signal },
    );
    if (told.context !== undefined) this.shared.facts!.context ??= told.context;
    return { ids: told.ids, text: text ?? "", context: told.context };
  }

  /** The facts of ServerModelFacts, asked once. */
  private async askFacts(signal?: AbortSignal): Promise<ServerModelFacts> {
    const props = await this.client.atRoot("/props", undefined, (json) => json as LlamaCppProps, { signal });
    const lineBreak = (await this.tokenize("\n", { addBos: false, special: false, signal })) ?? [];
    const eos: number[] = [];
    // The EOS, and the end-of-turn tokens the template writes (a chat model ends its answer with one).
    const template = typeof props?.chat_template === "string" ? props.chat_template : "";
    const ends = [props?.eos_token, ...END_OF_TURN_TOKENS.filter((t) => template.includes(t))];
    for (const token of ends) {
      if (typeof token !== "string" || !token) continue;
      const ids = await this.tokenize(token, { addBos: false, special: true, signal });
      if (ids?.length === 1 && !eos.includes(ids[0])) eos.push(ids[0]);
    }
    const nCtx = props?.default_generation_settings?.n_ctx;
    return {
      context: Number.isInteger(nCtx) && (nCtx as number) > 0 ? (nCtx as number) : undefined,
      eos,
      lineBreak,
      alias: typeof props?.model_alias === "string" ? basename(props.model_alias) : undefined,
    };
  }

  /**
   * The server's ids of `text`: with the model's BOS first if it wants one (`addBos`), special tokens'
   * texts read as those tokens (`special`, llama.cpp's parse_special); keeping the texts of the ids
   * when the server gives them (llama.cpp's `with_pieces`; a single id of "\n" is "\n" on any server).
   */
  private async tokenize(text: string, o: { addBos: boolean; special: boolean; signal?: AbortSignal }): Promise<number[] | undefined> {
    const model = this.client.model;
    const body = {
      ...(model !== undefined && { model }),
      content: text,
      prompt: text,
      add_special: o.addBos,
      add_special_tokens: false,
      parse_special: o.special,
      with_pieces: true,
    };
    const entries = await this.client.atRoot("/tokenize", body, tokenEntries, { signal: o.signal });
    if (!entries) return undefined;
    for (const e of entries) if (e.piece !== undefined) this.shared.pieces.set(e.id, e.piece);
    if (entries.length === 1 && entries[0].piece === undefined && !o.special) this.shared.pieces.set(entries[0].id, text);
    return entries.map((e) => e.id);
  }
}

/** The part of llama.cpp's `/props` read here. */
interface LlamaCppProps {
  default_generation_settings?: { n_ctx?: unknown };
  eos_token?: unknown;
  chat_template?: unknown;
  model_alias?: unknown;
}

function field(json: unknown, key: string, type: "string"): string {
  const v = (json as Record<string, unknown> | null)?.[key];
  if (typeof v !== type) throw new MalformedResponseError(`no ${key}`);
  return v as string;
}

function optionalInt(json: unknown, key: string): number | undefined {
  const v = (json as Record<string, unknown> | null)?.[key];
  return Number.isInteger(v) && (v as number) > 0 ? (v as number) : undefined;
}

const idList = (json: unknown): number[] => tokenEntries(json).map((e) => e.id);
