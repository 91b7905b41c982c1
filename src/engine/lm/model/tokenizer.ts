/**
 * The model's tokenizer (tokenizer.json through @huggingface/tokenizers) and its prompt format: the
 * chat template (chat_template.jinja, chat_template.json or tokenizer_config.json) when the model has
 * one, rendered as transformers' apply_chat_template(add_generation_prompt=True, enable_thinking=False)
 * renders it, else the plain Question/Answer prompt the demo model was trained on.
 */
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { InputError } from "../../util/errors";
import { formatPrompt } from "../../math/prompt";
import { ModelFolderError, TokenizerFolder } from "./modelFolder";

/**
 * The end-of-turn tokens chat templates write after each message. A chat model stops generating when
 * it writes one, but many exports list only the end-of-text token as eos_token_id (Llama-3's
 * generation_config.json without <|eot_id|>, a Qwen base config without <|im_end|>). The rule
 * (TextTokenizer.fromFolder): the stop tokens are generation_config.json's eos_token_id (one id or a
 * list; config.json's when it has none), plus tokenizer_config.json's eos_token, plus each string here
 * that is a token of the vocabulary and that the chat template itself writes.
 */
export const END_OF_TURN_TOKENS = [
  "<|im_end|>", // ChatML: Qwen, SmolLM, …
  "<|eot_id|>", // Llama-3.x
  "<|eom_id|>", // Llama-3.1+ (end of a tool-calling message)
  "<end_of_turn>", // Gemma
  "<|end|>", // Phi-3
  "<|END_OF_TURN_TOKEN|>", // Command-R
] as const;

export class TextTokenizer {
  private readonly chatTemplate?: Template;
  private readonly lineEnds: Map<number, boolean>;
  /** The system message every prompt starts with (withSystemPrompt); unset: none. */
  readonly systemPrompt?: string;

  private constructor(
    private readonly tokenizer: Tokenizer,
    private readonly config: Record<string, unknown>,
    readonly eosTokenIds: readonly number[],
    chatTemplate?: string | Template,
    /** The file the chat template came from, named when it fails. */
    private readonly templatePath = "tokenizer_config.json",
    /** The model folder's name, for messages. */
    private readonly modelName = "the model",
    systemPrompt?: string,
    lineEnds?: Map<number, boolean>,
  ) {
    this.lineEnds = lineEnds ?? new Map();
    this.systemPrompt = systemPrompt;
    if (!chatTemplate) return;
    if (chatTemplate instanceof Template) {
      this.chatTemplate = chatTemplate;
      return;
    }
    try {
      this.chatTemplate = new Template(chatTemplate);
    } catch (e) {
      throw new ModelFolderError(`${templatePath}: its chat_template cannot be parsed: ${oneLine(e)}`);
    }
    // Rendered once now, so a template that fails on every prompt fails before the model loads.
    this.renderChat("2 + 2 = ?");
  }

  static fromFolder(folder: TokenizerFolder): TextTokenizer {
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(folder.tokenizerJson, folder.tokenizerConfig);
    } catch (e) {
      throw new ModelFolderError(`${folder.dir}/tokenizer.json could not be loaded: ${(e as Error).message}`);
    }
    // The stop tokens: see END_OF_TURN_TOKENS for the rule.
    const eos = [...folder.generation.eosTokenIds];
    const add = (token: string | undefined) => {
      const id = token ? tokenizer.token_to_id(token) : undefined;
      if (id !== undefined && !eos.includes(id)) eos.push(id);
    };
    const eosToken = folder.tokenizerConfig.eos_token;
    add(typeof eosToken === "string" ? eosToken : (eosToken as { content?: string } | undefined)?.content);
    const template = folder.chatTemplate;
    if (template) for (const token of END_OF_TURN_TOKENS) if (template.source.includes(token)) add(token);
    if (!eos.length)
      throw new ModelFolderError(`${folder.dir}: no end-of-sequence token in generation_config.json, config.json or tokenizer_config.json`);
    return new TextTokenizer(tokenizer, folder.tokenizerConfig, eos, template?.source, template?.path, folder.name);
  }

  /**
   * This tokenizer with `system` as the system message of every prompt (the user's system prompt:
   * --system, the twistedSmc.systemPrompt setting). Per request, not per model: it shares the loaded
   * tokenizer. An empty or blank prompt is no system message. A model without a chat template (the
   * shipped one: a plain Question/Answer prompt) and a template that raises on a system message
   * (Gemma-2's: "System role not supported") or leaves it out are refused with one line (InputError).
   * The prompt is not folded into the user's message instead: that is a prompt format the model was not
   * tuned on, and templates that want it so fold it themselves (Gemma-3's does).
   */
  withSystemPrompt(system: string | undefined): TextTokenizer {
    const text = system?.trim();
    if (!text) return this.systemPrompt === undefined ? this : this.withSystem(undefined);
    if (!this.chatTemplate) {
      throw new InputError(
        `${this.modelName} has no chat template, so it takes no system prompt (its prompt is the plain Question/Answer format): leave the system prompt empty`,
      );
    }
    const view = this.withSystem(text);
    let rendered: string;
    try {
      rendered = view.render("2 + 2 = ?");
    } catch (e) {
      throw new InputError(
        `${this.modelName}'s chat template does not take a system prompt (it says: ${oneLine(e)}): leave the system prompt empty`,
      );
    }
    if (!rendered.includes(text))
      throw new InputError(`${this.modelName}'s chat template leaves the system prompt out: leave the system prompt empty`);
    return view;
  }

  private withSystem(system: string | undefined): TextTokenizer {
    return new TextTokenizer(
      this.tokenizer,
      this.config,
      this.eosTokenIds,
      this.chatTemplate,
      this.templatePath,
      this.modelName,
      system,
      this.lineEnds,
    );
  }

  get hasChatTemplate(): boolean {
    return this.chatTemplate !== undefined;
  }

  /** Token ids of the prompt that asks the model to solve `question`. */
  encodeProblem(question: string): number[] {
    if (this.chatTemplate) return this.tokenizer.encode(this.renderChat(question), { add_special_tokens: false }).ids; // the template writes any special tokens
    return this.tokenizer.encode(formatPrompt(question)).ids;
  }

  /** The prompt's text: the chat template applied to the question, else the Question/Answer format. */
  promptText(question: string): string {
    return this.chatTemplate ? this.renderChat(question) : formatPrompt(question);
  }

  /** The chat template applied to the question; a template that fails is the model folder's fault. */
  private renderChat(question: string): string {
    try {
      return this.render(question);
    } catch (e) {
      throw new ModelFolderError(`${this.templatePath}: its chat_template cannot be rendered: ${oneLine(e)}`);
    }
  }

  /**
   * The context transformers' apply_chat_template gives a template: the messages, the special tokens
   * by name, add_generation_prompt, and here enable_thinking: false (Qwen3 then opens its answer with an
   * empty <think></think> block and answers directly; unset, it starts thinking and a short budget ends
   * inside <think>); templates that do not read it ignore it. @huggingface/jinja defines strftime_now
   * and raise_exception itself, as transformers does. date_string is not passed, as transformers does
   * not: Llama-3.1's template then writes its own default ("26 Jul 2024"), Llama-3.2's today's date
   * through strftime_now.
   */
  private render(question: string): string {
    const messages = [{ role: "user", content: question.trim() }];
    if (this.systemPrompt !== undefined) messages.unshift({ role: "system", content: this.systemPrompt });
    // bos_token and eos_token always ("" when unset); the others when set, as transformers passes them.
    const special: Record<string, string> = { bos_token: this.specialToken("bos_token"), eos_token: this.specialToken("eos_token") };
    for (const k of ["unk_token", "pad_token"]) if (this.specialToken(k)) special[k] = this.specialToken(k);
    return this.chatTemplate!.render({ ...special, messages, add_generation_prompt: true, enable_thinking: false });
  }

  encode(text: string, addSpecialTokens = false): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: readonly number[]): string {
    if (!ids.length) return ""; // the library rejects an empty list
    return this.tokenizer.decode([...ids], { skip_special_tokens: true });
  }

  /** Whether a token's text contains a line break: the end of a reasoning step. */
  isLineEnd(id: number): boolean {
    let cached = this.lineEnds.get(id);
    if (cached === undefined) {
      cached = this.tokenizer.decode([id], { skip_special_tokens: true }).includes("\n");
      this.lineEnds.set(id, cached);
    }
    return cached;
  }

  isEos(id: number): boolean {
    return this.eosTokenIds.includes(id);
  }

  private specialToken(key: string): string {
    const v = this.config[key];
    if (typeof v === "string") return v;
    if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") return (v as { content: string }).content;
    return "";
  }
}

/** An error's message on one line (a template error may quote several lines of the template). */
const oneLine = (e: unknown): string => String((e as Error)?.message ?? e).replace(/\s*\n\s*/g, " ");

/**
 * `model` with the user's system prompt in every prompt it encodes (TextTokenizer.withSystemPrompt):
 * per request, sharing the loaded model; `model` itself when there is none.
 */
export function withSystemPrompt<M extends { tokenizer: TextTokenizer }>(model: M, system: string | undefined): M {
  const tokenizer = model.tokenizer.withSystemPrompt(system);
  return tokenizer === model.tokenizer ? model : { ...model, tokenizer };
}
