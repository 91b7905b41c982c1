/**
 * llama.cpp's llama-server serving the shipped model, the real OpenAI-compatible server the remote
 * proposal backend is tested against (issue 20): the model converted to GGUF by the committed recipe
 * (scripts/llama-server/to_gguf.py), the server run from the Debian unstable root that
 * scripts/llama-server/setup.sh builds. Checks that the server is the engine's model: the same tokens
 * for the same text, the same greedy solution token for token, and a list of prompts answered in order.
 *
 * The GGUF's merges rebuild every vocabulary word, so text of the model's own words tokenizes alike;
 * elsewhere llama.cpp's BPE differs from the engine's (tokenizer.json keeps whole words or single
 * characters): an unknown word starting with a vocabulary word keeps that word (" applesauce" is
 * " apples" + "a" "u" "c" "e", the engine's is one token a character), one whose merges end on a
 * non-word loses its space (" b" after two spaces is "b"), and a tab is dropped (the engine's <unk>).
 * A client sends token ids, which the server uses verbatim.
 *
 * Without the root (or as a user who cannot chroot) the suite skips, unless
 * TWISTED_SMC_REQUIRE_LLAMA_SERVER=1: then it fails. LLAMA_SERVER_ROOT names another root.
 */
import assert from "node:assert/strict";
import { generate } from "../../src/engine/lm/generate";
import { formatSolution, synthesize } from "../../src/engine/math/problems";
import { shippedModel } from "./helpers";
import { LlamaServer, startLlamaServer } from "./llamaServerFixture";

/** Sampling the model's own distribution: the server's defaults truncate it (top_k 40, top_p 0.95, min_p 0.05). */
const UNTRUNCATED = { top_k: 0, top_p: 1, min_p: 0 };
const BOS = 1;
const EOS = 2;
const MAX_TOKENS = 160;

interface Choice {
  text: string;
  index: number;
  finish_reason: string;
  logprobs: { content: { id: number }[] } | null;
}

describe("llama-server serving the shipped model (GGUF)", function () {
  this.timeout(120000);
  let server: LlamaServer | undefined;
  let base: string;

  async function post<T>(path: string, body: unknown): Promise<T> {
    const res = await fetch(base + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const text = await res.text();
    assert.equal(res.status, 200, `${path}: ${text}`);
    return JSON.parse(text) as T;
  }

  /** Greedy completions of token-id prompts, as token ids (an EOS is the last logprobs entry) and text. */
  async function greedy(prompts: number[][]): Promise<Choice[]> {
    const body = { prompt: prompts, max_tokens: MAX_TOKENS, temperature: 0, ...UNTRUNCATED, logprobs: 1 };
    return (await post<{ choices: Choice[] }>("/v1/completions", body)).choices;
  }

  before(async function () {
    server = await startLlamaServer(this);
    base = server.base;
  });

  after(async () => {
    await server?.close();
  });

  it("tokenizes text as the engine's tokenizer does", async () => {
    const { tokenizer } = await shippedModel();
    const problems = [...synthesize("test", 150), ...synthesize("train", 150)];
    const texts = problems.flatMap((p) => [tokenizer.promptText(p.question), formatSolution(p.steps)]);
    texts.push("Ben's 3 boxes cost $12.50 each.\n\n#### 37.5", "");
    for (let i = 0; i < texts.length; i += 32) {
      const batch = texts.slice(i, i + 32);
      const answers = await Promise.all(batch.map((content) => post<{ tokens: number[] }>("/tokenize", { content, add_special: false })));
      batch.forEach((text, j) => assert.deepEqual(answers[j].tokens, tokenizer.encode(text), JSON.stringify(text)));
    }
  });

  it("gives the ONNX engine's greedy solution token for token (token-id prompts with <bos>)", async () => {
    const { lm, tokenizer } = await shippedModel();
    const problems = synthesize("test", 20, 1);
    const prompts = problems.map((p) => tokenizer.encodeProblem(p.question));
    // Token-id prompts are used verbatim: the <bos> must be there (the engine's prompt has it).
    for (const p of prompts) assert.equal(p[0], BOS);
    const options = { numSamples: 1, maxTokens: MAX_TOKENS, temperature: 0, seed: 0, isEos: (t: number) => tokenizer.isEos(t) };
    const choices = await Promise.all(prompts.map(async (p) => (await greedy([p]))[0]));
    let eos = 0;
    for (const [i, p] of prompts.entries()) {
      const local = (await generate(lm, p, options)).sequences[0];
      const ids = choices[i].logprobs!.content.map((c) => c.id);
      const expected = local.finishReason === "eos" ? [...local.tokens, EOS] : local.tokens;
      assert.deepEqual(ids, expected, problems[i].question);
      assert.equal(choices[i].text, tokenizer.decode(local.tokens));
      assert.equal(choices[i].finish_reason, local.finishReason === "eos" ? "stop" : "length");
      if (local.finishReason === "eos") eos++;
    }
    assert.ok(eos >= 15, `only ${eos} of 20 greedy solutions ended with <eos>`);
  });

  it("answers a list of prompts with one choice per prompt, in prompt order", async () => {
    const { tokenizer } = await shippedModel();
    const prompts = synthesize("test", 12, 2).map((p) => tokenizer.encodeProblem(p.question));
    const one = await Promise.all(prompts.map(async (p) => (await greedy([p]))[0].text));
    const listed = await greedy(prompts);
    assert.equal(listed.length, prompts.length);
    listed.forEach((c, i) => {
      assert.equal(c.index, i);
      assert.equal(c.text, one[i], `prompt ${i}`);
    });
    assert.ok(new Set(one).size > 1, "the prompts should not all have the same answer");
  });
});
