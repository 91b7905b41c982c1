/**
 * The text side of a model on an inference server: how a problem becomes the prompt's token ids, and
 * how the ids of the lines the server returns become text again. Two sources, as the user chooses:
 *
 * - the model's tokenizer files, read here (`--model`, the twistedSmc.model setting: a folder or a Hub
 *   id): its chat template is applied locally, exactly as the local backend applies it, and the server
 *   is checked to read the same ids (TokenizerFilesText, below);
 * - without them, the server's own chat template and tokenizer, asked over HTTP (ServerFormatting,
 *   serverFormatting.ts): the model is then whatever the server serves, and nothing of it is needed here.
 */
import type { CompletionsClient, LineChoice } from "./openaiCompletions";
import type { TokenText } from "../smc/twistedSmc";
import { encodeWithinContext, PromptInContext } from "../lm/model/contextWindow";
import { TokenizerFolder } from "../lm/model/modelFolder";
import { TextTokenizer } from "../lm/model/tokenizer";
import { InputError } from "../util/errors";
import { synthesize } from "../math/problems";

export interface RemotePrompt extends PromptInContext {
  /** The prompt as text, for the record. */
  text: string;
}

export interface RemoteText extends TokenText {
  /** What results call the model: the tokenizer folder's name, or the served model's. */
  readonly name: string;
  /** The tokenizer files' folder, or undefined when the server formats the prompt. */
  readonly folder?: TokenizerFolder;
  /** The model's end-of-sequence ids (known once `ready` has resolved). */
  readonly eosTokenIds: readonly number[];
  /** The ids of a line break, appended to a line the server cut at its stop string (known once `ready` has resolved). */
  readonly lineBreak: readonly number[];
  /** Whatever must be known or checked before the first line is asked for; made once, retried after a failure. */
  ready(signal?: AbortSignal): Promise<void>;
  /** The prompt of `question` (with the system prompt, if any), fitted to the model's context. */
  prompt(question: string, maxTokens: number, signal?: AbortSignal): Promise<RemotePrompt>;
  /** The ids of the text of a line the server returned (without the stop string and the EOS). */
  lineTokens(line: LineChoice): number[];
  /** The same text side with `system` as every prompt's system message (blank: none). */
  withSystemPrompt(system: string | undefined): RemoteText;
}

/** The prompt from the model's tokenizer files, applied here; the server must read the same ids. */
export class TokenizerFilesText implements RemoteText {
  constructor(
    readonly folder: TokenizerFolder,
    private readonly tokenizer: TextTokenizer,
    private readonly client: CompletionsClient,
    /** Shared with the views withSystemPrompt makes: one check per model. */
    private readonly shared: { check?: Promise<void>; lineBreak?: number[] } = {},
  ) {}

  get name(): string {
    return this.folder.name;
  }

  get eosTokenIds(): readonly number[] {
    return this.tokenizer.eosTokenIds;
  }

  get lineBreak(): readonly number[] {
    return (this.shared.lineBreak ??= this.tokenizer.encode("\n"));
  }

  ready(signal?: AbortSignal): Promise<void> {
    this.shared.check ??= checkTokenizer(this.folder, this.tokenizer, this.client, signal).catch((e) => {
      this.shared.check = undefined;
      throw e;
    });
    return this.shared.check;
  }

  async prompt(question: string, maxTokens: number, signal?: AbortSignal): Promise<RemotePrompt> {
    const fitted = encodeWithinContext({ folder: this.folder, tokenizer: this.tokenizer }, question, maxTokens);
    await this.ready(signal);
    return { ...fitted, text: this.tokenizer.promptText(question) };
  }

  lineTokens(line: LineChoice): number[] {
    return line.tokens ?? (line.text ? this.tokenizer.encode(line.text) : []);
  }

  decode(tokens: readonly number[]): string {
    return this.tokenizer.decode(tokens);
  }

  isEos(token: number): boolean {
    return this.tokenizer.isEos(token);
  }

  isLineEnd(token: number): boolean {
    return this.tokenizer.isLineEnd(token);
  }

  withSystemPrompt(system: string | undefined): RemoteText {
    const tokenizer = this.tokenizer.withSystemPrompt(system);
    return tokenizer === this.tokenizer ? this : new TokenizerFilesText(this.folder, tokenizer, this.client, this.shared);
  }
}

/** A text in the words the shipped model knows (a generated problem and a line of arithmetic) that any real tokenizer also splits its own way. */
const CHECK_TEXT = `${synthesize("train", 1, 20)[0].question}\n12 + 30 = 42\n#### 42`;

/**
 * Whether the server's model reads tokens as the local tokenizer writes them: token-id prompts from
 * another model's tokenizer are gibberish to it, and it would answer gibberish without an error. The
 * server tokenizes a text (`/tokenize`) and its ids must equal the local ones; a server without the
 * endpoint is trusted.
 */
async function checkTokenizer(
  folder: TokenizerFolder,
  tokenizer: TextTokenizer,
  client: CompletionsClient,
  signal?: AbortSignal,
): Promise<void> {
  const theirs = await client.tokenize(CHECK_TEXT, { signal });
  if (theirs === undefined) return;
  const ours = tokenizer.encode(CHECK_TEXT);
  const bos = folder.config.bosTokenId;
  const trimmed = theirs[0] === bos && ours[0] !== bos ? theirs.slice(1) : theirs;
  if (trimmed.length !== ours.length || trimmed.some((t, i) => t !== ours[i]))
    throw new InputError(
      `the server's model does not use ${folder.name}'s tokenizer (its /tokenize differs at token ${firstDifference(trimmed, ours)}): ` +
        `pass --model (or set twistedSmc.model to) the served model's folder or Hub id, whose tokenizer files encode the prompt, ` +
        `or leave it unset to let the server format the prompt`,
    );
}

const firstDifference = (a: readonly number[], b: readonly number[]) => {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
};
