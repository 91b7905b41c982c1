/**
 * The model's tokenizer (tokenizer.json through @huggingface/tokenizers) and its prompt format: the
 * chat template from tokenizer_config.json when the model has one, else the plain Question/Answer
 * prompt the demo model was trained on.
 */
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { formatPrompt } from "../../math/prompt";
import { ModelFolder, ModelFolderError } from "./modelFolder";

export class TextTokenizer {
  private readonly chatTemplate?: Template;
  private readonly lineEnds = new Map<number, boolean>();

  private constructor(
    private readonly tokenizer: Tokenizer,
    private readonly config: Record<string, unknown>,
    readonly eosTokenIds: readonly number[],
    chatTemplateSource?: string,
    /** tokenizer_config.json, named when its chat template fails. */
    private readonly configPath = "tokenizer_config.json",
  ) {
    if (!chatTemplateSource) return;
    try {
      this.chatTemplate = new Template(chatTemplateSource);
    } catch (e) {
      throw new ModelFolderError(`${configPath}: its chat_template cannot be parsed: ${oneLine(e)}`);
    }
    // Rendered once now, so a template that fails on every prompt fails before the model loads.
    this.renderChat("2 + 2 = ?");
  }

  static fromFolder(folder: ModelFolder): TextTokenizer {
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(folder.tokenizerJson, folder.tokenizerConfig);
    } catch (e) {
      throw new ModelFolderError(`${folder.dir}/tokenizer.json could not be loaded: ${(e as Error).message}`);
    }
    const eos = [...folder.generation.eosTokenIds];
    const eosToken = folder.tokenizerConfig.eos_token;
    const eosName = typeof eosToken === "string" ? eosToken : (eosToken as { content?: string } | undefined)?.content;
    const eosId = eosName ? tokenizer.token_to_id(eosName) : undefined;
    if (eosId !== undefined && !eos.includes(eosId)) eos.push(eosId);
    if (!eos.length)
      throw new ModelFolderError(`${folder.dir}: no end-of-sequence token in generation_config.json, config.json or tokenizer_config.json`);
    const template = folder.tokenizerConfig.chat_template;
    let source: string | undefined;
    if (typeof template === "string") source = template;
    else if (Array.isArray(template))
      source = (template as { name?: string; template?: string }[]).find((t) => t.name === "default")?.template;
    return new TextTokenizer(tokenizer, folder.tokenizerConfig, eos, source, join(folder.dir, "tokenizer_config.json"));
  }

  get hasChatTemplate(): boolean {
    return this.chatTemplate !== undefined;
  }

  /** Token ids of the prompt that asks the model to solve `question`. */
  encodeProblem(question: string): number[] {
    if (this.chatTemplate) return this.tokenizer.encode(this.renderChat(question), { add_special_tokens: false }).ids;
    return this.tokenizer.encode(formatPrompt(question)).ids;
  }

  /** The chat template applied to the question; a template that fails is the model folder's fault. */
  private renderChat(question: string): string {
    try {
      return this.chatTemplate!.render({
        messages: [{ role: "user", content: question.trim() }],
        add_generation_prompt: true,
        bos_token: this.specialToken("bos_token"),
        eos_token: this.specialToken("eos_token"),
      });
    } catch (e) {
      throw new ModelFolderError(`${this.configPath}: its chat_template cannot be rendered: ${oneLine(e)}`);
    }
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
