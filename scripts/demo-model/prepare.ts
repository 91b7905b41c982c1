/**
 * Step 1 of the demo-model recipe (see README.md here): writes the synthetic training data, builds the
 * tokenizer files into the model folder, and encodes the data with the real @huggingface/tokenizers
 * so that PyTorch trains on exactly the ids the engine will produce.
 *
 *   npx tsx scripts/demo-model/prepare.ts [--n 300000] [--seed 0]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { synthesize } from "../../src/engine/math/problems";
import { formatPrompt } from "../../src/engine/math/prompt";

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ""), process.argv[i + 1]);
const n = Number(args.get("n") ?? 300000);
const seed = Number(args.get("seed") ?? 0);
const root = resolve(__dirname, "../..");
const modelDir = join(root, "models/tiny-math-llama");
const work = join(__dirname, "work");
mkdirSync(work, { recursive: true });

/** Whole words, single digits, single symbols, each optionally with its leading space. */
const PRETOKENIZER_REGEX = " ?[A-Za-z]+| ?[0-9]| ?[^A-Za-z0-9\\s]|\\s";
const SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>"];

console.log(`synthesizing ${n} training problems (seed ${seed})`);
const problems = synthesize("train", n, seed);
const texts = problems.map((p) => ({ prompt: formatPrompt(p.question), completion: p.answer }));

// Vocabulary: specials, every printable ASCII character (the fallback for unseen words), then each
// pre-token seen at least 20 times in the training data.
const counts = new Map<string, number>();
const re = new RegExp(PRETOKENIZER_REGEX, "g");
for (const t of texts) for (const m of (t.prompt + t.completion).matchAll(re)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
const vocab: string[] = [...SPECIAL];
for (let c = 32; c < 127; c++) vocab.push(String.fromCharCode(c));
vocab.push("\n");
const frequent = [...counts].filter(([tok, c]) => c >= 20 && !vocab.includes(tok)).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
for (const [tok] of frequent) vocab.push(tok);
console.log(`vocabulary: ${vocab.length} tokens`);

const tokenizerJson = {
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: SPECIAL.map((content, id) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  })),
  normalizer: null,
  pre_tokenizer: { type: "Split", pattern: { Regex: PRETOKENIZER_REGEX }, behavior: "Isolated", invert: false },
  post_processor: {
    type: "TemplateProcessing",
    single: [{ SpecialToken: { id: "<bos>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
    pair: [{ SpecialToken: { id: "<bos>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
    special_tokens: { "<bos>": { id: "<bos>", ids: [1], tokens: ["<bos>"] } },
  },
  decoder: { type: "Fuse" },
  model: {
    type: "BPE",
    dropout: null,
    unk_token: "<unk>",
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: false,
    byte_fallback: false,
    ignore_merges: true,
    vocab: Object.fromEntries(vocab.map((t, i) => [t, i])),
    merges: [],
  },
};
const tokenizerConfig = {
  tokenizer_class: "PreTrainedTokenizerFast",
  bos_token: "<bos>",
  eos_token: "<eos>",
  unk_token: "<unk>",
  pad_token: "<pad>",
  add_bos_token: true,
  add_eos_token: false,
  clean_up_tokenization_spaces: false,
  model_max_length: 512,
};
writeFileSync(join(modelDir, "tokenizer.json"), JSON.stringify(tokenizerJson, null, 1) + "\n");
writeFileSync(join(modelDir, "tokenizer_config.json"), JSON.stringify(tokenizerConfig, null, 2) + "\n");

// Encode: <bos> prompt completion <eos>; the prompt length marks where the loss starts.
const tok = new Tokenizer(tokenizerJson, tokenizerConfig);
const eos = tok.token_to_id("<eos>")!;
const unk = tok.token_to_id("<unk>")!;
const ids: number[] = [];
const offsets = new Int32Array(texts.length + 1);
const promptLens = new Int32Array(texts.length);
let unknown = 0;
let maxLen = 0;
texts.forEach((t, i) => {
  const prompt = tok.encode(t.prompt).ids;
  const full = tok.encode(t.prompt + t.completion).ids;
  for (let j = 0; j < prompt.length; j++) if (prompt[j] !== full[j]) throw new Error(`prompt is not a token prefix: ${t.prompt}`);
  full.push(eos);
  unknown += full.filter((x) => x === unk).length;
  maxLen = Math.max(maxLen, full.length);
  promptLens[i] = prompt.length;
  offsets[i + 1] = offsets[i] + full.length;
  ids.push(...full);
});
writeFileSync(join(work, "train.tokens.u16"), Buffer.from(Uint16Array.from(ids).buffer));
writeFileSync(join(work, "train.offsets.i32"), Buffer.from(offsets.buffer));
writeFileSync(join(work, "train.prompt_lens.i32"), Buffer.from(promptLens.buffer));
writeFileSync(
  join(work, "meta.json"),
  JSON.stringify({ n, seed, vocab_size: vocab.length, tokens: ids.length, max_len: maxLen, unknown }, null, 2),
);
console.log(`encoded ${ids.length} tokens, longest sequence ${maxLen}, unknown tokens ${unknown}`);
