/**
 * The model's context window: a prompt and the tokens generated after it must fit in the positions the
 * model was trained for (config.json's max_position_embeddings). Every entry point (CLI, engine server,
 * evaluation, training) encodes its problem here, so an over-long problem is refused with one line
 * before any tensor is made — past the window a model writes gibberish, and a long prefill can take
 * gigabytes — and the generation budget is capped to what is left.
 */
import { InputError } from "../../util/errors";
import type { TokenizerFolder } from "./modelFolder";
import type { TextTokenizer } from "./tokenizer";

/** More characters than any tokenizer fits in this many positions: refused before tokenizing at all. */
const MAX_CHARS_PER_POSITION = 32;
/** Without max_position_embeddings in config.json, problems stay under this many characters. */
const FALLBACK_MAX_CHARS = 256 * 1024;

export class ProblemTooLongError extends InputError {}

export interface PromptInContext {
  prompt: number[];
  /** The generation budget, capped so that prompt + maxTokens fits the context. */
  maxTokens: number;
  /** Set when maxTokens was capped: one line saying so. */
  warning?: string;
}

/** How many positions the model reads, or undefined when its config does not say. */
export function contextLength(model: { folder: TokenizerFolder }): number | undefined {
  return model.folder.config.maxPositions;
}

/**
 * Encodes `question` as the model's prompt and fits it in the context: refuses a problem whose prompt
 * leaves no room for an answer, and caps `maxTokens` to the positions that remain.
 */
export function encodeWithinContext(
  model: { folder: TokenizerFolder; tokenizer: TextTokenizer },
  question: string,
  maxTokens: number,
): PromptInContext {
  const context = contextLength(model);
  checkProblemLength(question, context, model.folder.name);
  return fitPrompt(model.tokenizer.encodeProblem(question), maxTokens, context, model.folder.name);
}

/** Refuses, before it is tokenized (here or by a server), a problem far longer than `name`'s context could hold. */
export function checkProblemLength(question: string, context: number | undefined, name: string): void {
  const charLimit = context === undefined ? FALLBACK_MAX_CHARS : context * MAX_CHARS_PER_POSITION;
  if (question.length > charLimit) {
    throw new ProblemTooLongError(
      `the problem is ${question.length.toLocaleString("en-US")} characters, far more than ${name} can read` +
        (context === undefined ? "" : ` (${context} tokens of context)`) +
        `: shorten it`,
    );
  }
}

/**
 * Fits an encoded prompt in `context` positions: refuses a prompt that leaves no room for an answer,
 * and caps `maxTokens` to the positions that remain. Without a known context, nothing is capped.
 */
export function fitPrompt(prompt: number[], maxTokens: number, context: number | undefined, name: string): PromptInContext {
  if (context === undefined) return { prompt, maxTokens };
  // At least a few tokens of answer, or the problem is refused: a model cut off at once answers nothing.
  const minAnswer = Math.min(maxTokens, 8);
  if (prompt.length + minAnswer > context) {
    throw new ProblemTooLongError(
      `the problem's prompt is ${prompt.length} tokens, but ${name} reads at most ${context} (prompt and answer together): shorten the problem`,
    );
  }
  if (prompt.length + maxTokens <= context) return { prompt, maxTokens };
  const capped = context - prompt.length;
  return {
    prompt,
    maxTokens: capped,
    warning: `max tokens lowered from ${maxTokens} to ${capped}: the ${prompt.length}-token prompt and the answer must fit ${name}'s ${context}-token context`,
  };
}
