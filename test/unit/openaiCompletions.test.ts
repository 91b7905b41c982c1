/**
 * The remote proposal backend's client (src/engine/remote/): lines of token-id prefixes from an
 * OpenAI-compatible `/v1/completions` server. Against the real thing: llama.cpp's llama-server serving
 * the shipped model (llamaServerFixture.ts; the suite skips without its root), alone and behind a small
 * local proxy (node:http) that injects faults (429 with Retry-After, 503, malformed JSON, a hang past
 * the timeout, a closed connection), counts requests in flight and records what it was sent. The
 * response parser is also checked on a vLLM answer written by hand (vLLM is not installable here).
 */
import assert from "node:assert/strict";
import { generate } from "../../src/engine/lm/generate";
import { synthesize } from "../../src/engine/math/problems";
import { parseChoice, rawChoices } from "../../src/engine/remote/completionsResponse";
import {
  CompletionsClient,
  completionsUrl,
  LinesRequest,
  planRequests,
  RemoteServerError,
} from "../../src/engine/remote/openaiCompletions";
import { retryAfter } from "../../src/engine/remote/retry";
import { shippedModel } from "./helpers";
import { freePort, LlamaServer, startLlamaServer } from "./llamaServerFixture";
import { FaultProxy } from "./faultProxy";

const EOS = 2;
const NEWLINE = 99;
const KEY = "sk-test-secret-key-0123456789";
const FAST = { backoffMs: 10, maxBackoffMs: 40, timeoutMs: 30000 };

/**
 * A vLLM /v1/completions answer WRITTEN BY HAND (not recorded from a server: vLLM is not installable
 * here), in the legacy logprobs shape vLLM's OpenAI server returns, for a request with `n: 3`,
 * `logprobs: 1`, `stop: ["\n"]`, `return_token_ids: true`, on the shipped model's vocabulary ("\n" is
 * id 99, EOS id 2). As vLLM does: a stop string is cut from the text while its token stays in the ids
 * and logprobs, with stop_reason the stop string; an EOS has stop_reason null; max_tokens gives
 * finish_reason "length" and stop_reason null.
 */
const VLLM_SAMPLE = {
  id: "cmpl-hand-written",
  object: "text_completion",
  created: 1796400000,
  model: "tiny-math-llama",
  choices: [
    {
      index: 0,
      text: "30 * 23 = 690",
      logprobs: {
        text_offset: [0, 1, 2, 4, 6, 7, 9, 11, 12, 13],
        token_logprobs: [-0.01, 0, -0.02, -0.01, 0, -0.01, -0.03, -0.01, 0, -0.2],
        tokens: ["3", "0", " *", " 2", "3", " =", " 6", "9", "0", "\n"],
        top_logprobs: [
          { "3": -0.01 },
          { "0": 0 },
          { " *": -0.02 },
          { " 2": -0.01 },
          { "3": 0 },
          { " =": -0.01 },
          { " 6": -0.03 },
          { "9": -0.01 },
          { "0": 0 },
          { "\n": -0.2 },
        ],
      },
      token_ids: [23, 20, 108, 102, 23, 100, 117, 29, 20, 99],
      finish_reason: "stop",
      stop_reason: "\n",
    },
    {
      index: 1,
      text: "#### 841",
      logprobs: {
        text_offset: [0, 4, 6, 7, 8],
        token_logprobs: [-0.1, -0.01, 0, -0.05, 0],
        tokens: ["####", " 8", "4", "1", "</s>"],
        top_logprobs: [{ "####": -0.1 }, { " 8": -0.01 }, { "4": 0 }, { "1": -0.05 }, { "</s>": 0 }],
      },
      token_ids: [150, 121, 24, 21, 2],
      finish_reason: "stop",
      stop_reason: null,
    },
    {
      index: 2,
      text: "30 * 2",
      logprobs: {
        text_offset: [0, 1, 2, 4],
        token_logprobs: [-0.01, 0, -0.02, -0.01],
        tokens: ["3", "0", " *", " 2"],
        top_logprobs: [{ "3": -0.01 }, { "0": 0 }, { " *": -0.02 }, { " 2": -0.01 }],
      },
      token_ids: [23, 20, 108, 102],
      finish_reason: "length",
      stop_reason: null,
    },
  ],
  usage: { prompt_tokens: 40, total_tokens: 59, completion_tokens: 19 },
};

describe("OpenAI completions client: parsing and planning (no server)", () => {
  const parse = { eosTokenIds: [EOS], stopTokenIds: [NEWLINE] };

  it("reads vLLM's legacy logprobs shape and stop_reason (hand-written sample)", () => {
    const lines = rawChoices(VLLM_SAMPLE, 3).map((c) => parseChoice(c, parse));
    assert.deepEqual(lines, [
      {
        text: "30 * 23 = 690",
        tokens: [23, 20, 108, 102, 23, 100, 117, 29, 20],
        pieces: ["3", "0", " *", " 2", "3", " =", " 6", "9", "0"],
        finish: "stop",
      },
      { text: "#### 841", tokens: [150, 121, 24, 21], pieces: ["####", " 8", "4", "1"], finish: "eos" },
      { text: "30 * 2", tokens: [23, 20, 108, 102], pieces: ["3", "0", " *", " 2"], finish: "length" },
    ]);
  });

  it("reads vLLM's return_tokens_as_token_ids form, cutting a whole stop token and refusing a partial one", () => {
    const choice = (tokens: string[], text: string, stop_reason: string | null) => ({
      index: 0,
      text,
      finish_reason: "stop",
      stop_reason,
      logprobs: { tokens, token_logprobs: tokens.map(() => 0), top_logprobs: null, text_offset: [] },
    });
    assert.deepEqual(parseChoice(choice(["token_id:23", "token_id:99"], "3", "\n"), parse), { text: "3", tokens: [23], finish: "stop" });
    assert.deepEqual(parseChoice(choice(["token_id:23", "token_id:2"], "3", null), parse), { text: "3", tokens: [23], finish: "eos" });
    // The stop string inside a larger token: the ids do not spell the text, so none are given.
    assert.deepEqual(parseChoice(choice(["token_id:23", "token_id:300"], "3.", "\n"), parse), { text: "3.", finish: "stop" });
  });

  it("reads SGLang's matched_stop (the EOS id or the stop string; shape from its source, written by hand)", () => {
    const choice = (matched_stop: number | string) => ({ index: 0, text: "3", finish_reason: "stop", matched_stop, logprobs: null });
    assert.equal(parseChoice(choice(EOS), parse).finish, "eos");
    assert.equal(parseChoice(choice("\n"), parse).finish, "stop");
  });

  it("reads llama.cpp's chat-shaped logprobs: an EOS is the last entry, a stop string is absent", () => {
    const entry = (id: number, token: string) => ({ id, token, logprob: 0, bytes: [], top_logprobs: [] });
    const stop = { index: 0, text: "3 =", finish_reason: "stop", logprobs: { content: [entry(23, "3"), entry(100, " =")] } };
    const eos = { index: 0, text: "3", finish_reason: "stop", logprobs: { content: [entry(23, "3"), entry(EOS, "")] } };
    const bare = { index: 0, text: "3", finish_reason: "stop", logprobs: null };
    assert.deepEqual(parseChoice(stop, parse), { text: "3 =", tokens: [23, 100], pieces: ["3", " ="], finish: "stop" });
    assert.deepEqual(parseChoice(eos, parse), { text: "3", tokens: [23], pieces: ["3"], finish: "eos" });
    assert.deepEqual(parseChoice(bare, parse), { text: "3", finish: "stop" });
    assert.throws(() => rawChoices({ choices: [stop] }, 2), /1 choices, 2 asked for/);
    assert.throws(() => rawChoices({ nothing: 1 }, 1), /no choices/);
  });

  it("plans as few requests as the API allows: copies with n, equal copy counts in one request", () => {
    const [a, b, c] = [
      [1, 5],
      [1, 6],
      [1, 7],
    ];
    assert.deepEqual(planRequests([a, b, c], 256), [{ prompts: [[0], [1], [2]], n: 1 }]);
    assert.deepEqual(planRequests([a, a, b, b, c, c], 256), [
      {
        prompts: [
          [0, 1],
          [2, 3],
          [4, 5],
        ],
        n: 2,
      },
    ]);
    assert.deepEqual(planRequests([a, b, a, a, c, c], 256), [
      { prompts: [[0, 2, 3]], n: 3 },
      { prompts: [[1]], n: 1 },
      { prompts: [[4, 5]], n: 2 },
    ]);
    assert.deepEqual(planRequests([a, b, c], 2), [
      { prompts: [[0], [1]], n: 1 },
      { prompts: [[2]], n: 1 },
    ]);
    assert.equal(completionsUrl("http://h:8000"), "http://h:8000/v1/completions");
    assert.equal(completionsUrl("http://h:8000/v1/"), "http://h:8000/v1/completions");
    assert.equal(retryAfter("2"), 2000);
    assert.equal(retryAfter("Thu, 01 Jan 1970 00:00:05 GMT", 1000), 4000);
    assert.equal(retryAfter(null), undefined);
  });
});

describe("OpenAI completions client against llama-server (the shipped model)", function () {
  this.timeout(120000);
  let server: LlamaServer | undefined;
  let proxy: FaultProxy;
  let prompts: number[][];
  let eosTokenIds: number[];

  const request = (p: readonly (readonly number[])[], extra: Partial<LinesRequest> = {}): LinesRequest => ({
    prompts: p,
    maxTokens: 48,
    temperature: 0,
    eosTokenIds,
    stopTokenIds: [NEWLINE],
    ...extra,
  });

  before(async function () {
    server = await startLlamaServer(this);
    proxy = new FaultProxy(server.base);
    await proxy.start();
    const { tokenizer } = await shippedModel();
    eosTokenIds = [EOS];
    assert.ok(tokenizer.isEos(EOS) && tokenizer.isLineEnd(NEWLINE) && tokenizer.decode([NEWLINE]) === "\n");
    prompts = synthesize("test", 8, 3).map((p) => tokenizer.encodeProblem(p.question));
  });

  after(async () => {
    await proxy?.stop();
    await server?.close();
  });

  beforeEach(() => proxy?.reset());

  it("gives the engine's greedy lines, step by step to the EOS, for 8 problems one request a step", async () => {
    const { lm, tokenizer } = await shippedModel();
    const client = new CompletionsClient({ url: proxy.url, model: "tiny-math-llama" });
    const done: number[][] = prompts.map(() => []);
    const finishes: string[][] = prompts.map(() => []);
    let live = prompts.map((_, i) => i);
    for (let step = 0; live.length && step < 12; step++) {
      const before = proxy.requests;
      const { lines, requests } = await client.completeLines(request(live.map((i) => [...prompts[i], ...done[i]])));
      assert.equal(requests, 1);
      assert.equal(proxy.requests - before, 1, "one HTTP request per step for distinct prefixes");
      const next: number[] = [];
      lines.forEach((line, j) => {
        const i = live[j];
        assert.ok(line.tokens, "llama.cpp gives the ids");
        assert.equal(tokenizer.decode(line.tokens), line.text);
        if (step === 0) {
          assert.equal(line.finish, "stop", "the first line ends at a line end");
          assert.ok(line.text.length > 0 && !line.text.includes("\n"));
        }
        finishes[i].push(line.finish);
        done[i].push(...line.tokens);
        if (line.finish === "stop") {
          done[i].push(NEWLINE);
          next.push(i);
        }
      });
      live = next;
    }
    const options = { numSamples: 1, maxTokens: 160, temperature: 0, seed: 0, isEos: (t: number) => tokenizer.isEos(t) };
    for (const [i, p] of prompts.entries()) {
      const local = (await generate(lm, p, options)).sequences[0];
      assert.equal(local.finishReason, "eos");
      assert.deepEqual(done[i], local.tokens, `problem ${i}: the lines joined are the engine's greedy solution`);
      assert.equal(finishes[i].at(-1), "eos", `problem ${i} ends with the model's EOS`);
      assert.ok(finishes[i].length >= 2 && finishes[i].slice(0, -1).every((f) => f === "stop"), finishes[i].join(" "));
    }
    const body = proxy.bodies[0];
    assert.deepEqual(
      { n: body.n, stop: body.stop, top_k: body.top_k, top_p: body.top_p, min_p: body.min_p, logprobs: body.logprobs, model: body.model },
      { n: 1, stop: ["\n"], top_k: -1, top_p: 1, min_p: 0, logprobs: 1, model: "tiny-math-llama" },
    );
  });

  it("gives each first line one greedy step of the engine (newline as the stop), and 'length' at max_tokens", async () => {
    const { lm, tokenizer } = await shippedModel();
    const client = new CompletionsClient({ url: server!.base });
    const { lines } = await client.completeLines(request(prompts));
    const short = await client.completeLines(request(prompts.slice(0, 2), { maxTokens: 2 }));
    const options = { numSamples: 1, maxTokens: 48, temperature: 0, seed: 0, isEos: (t: number) => tokenizer.isEos(t) || t === NEWLINE };
    for (const [i, p] of prompts.entries()) {
      const local = (await generate(lm, p, options)).sequences[0];
      assert.deepEqual(lines[i].tokens, local.tokens);
      assert.equal(lines[i].text, tokenizer.decode(local.tokens));
      if (i < 2)
        assert.deepEqual(short.lines[i], {
          text: tokenizer.decode(local.tokens.slice(0, 2)),
          tokens: local.tokens.slice(0, 2),
          pieces: local.tokens.slice(0, 2).map((t) => tokenizer.decode([t])),
          finish: "length",
        });
    }
  });

  it("sends identical prefixes once with n = copies and fans the choices back in order", async () => {
    const client = new CompletionsClient({ url: proxy.url });
    const greedy = (await client.completeLines(request(prompts.slice(0, 3)))).lines;
    proxy.reset();
    const [a, b, c] = prompts;
    // After a resampling: three copies each of three prefixes, interleaved.
    const resampled = [a, b, c, c, a, b, b, c, a];
    const { lines, requests } = await client.completeLines(request(resampled));
    assert.equal(requests, 1);
    assert.equal(proxy.requests, 1);
    assert.equal(proxy.bodies[0].n, 3);
    assert.deepEqual(proxy.bodies[0].prompt, [a, b, c]);
    resampled.forEach((p, k) => assert.deepEqual(lines[k], greedy[prompts.indexOf(p)], `particle ${k}`));
    // Uneven copies: one request per copy count; sampled lines at temperature 1 are still lines.
    proxy.reset();
    const uneven = [a, a, a, b, c, c];
    const sampled = await client.completeLines(request(uneven, { temperature: 1, seed: 7 }));
    assert.equal(sampled.requests, 3);
    assert.deepEqual(proxy.bodies.map((x) => x.n).sort(), [1, 2, 3]);
    assert.equal(sampled.lines.length, 6);
    for (const line of sampled.lines) assert.ok(["stop", "eos", "length"].includes(line.finish) && !line.text.includes("\n"));
    // The n copies of one prefix are separate draws, even with a seed (hot enough to make them differ).
    const hot = await client.completeLines(
      request(
        Array.from({ length: 8 }, () => a),
        { temperature: 3, seed: 11, maxTokens: 8 },
      ),
    );
    assert.equal(hot.requests, 1);
    assert.ok(new Set(hot.lines.map((l) => l.text)).size > 1, hot.lines.map((l) => l.text).join(" | "));
  });

  for (const fault of ["429", "503", "malformed", "hang", "close"] as const) {
    it(`retries past ${fault} for the first two tries and succeeds`, async () => {
      const notes: string[] = [];
      // A hang is told from a slow answer by the timeout alone: on a busy machine a real answer can take
      // seconds, so that case leaves room for one more timeout.
      const retry = fault === "hang" ? { ...FAST, timeoutMs: 2000, maxTries: 5 } : { ...FAST, timeoutMs: 60000 };
      const client = new CompletionsClient({ url: proxy.url, apiKey: KEY, retry, onRetry: (n) => notes.push(n.reason) });
      proxy.faults = [fault, fault];
      const { lines } = await client.completeLines(request(prompts.slice(0, 2)));
      assert.equal(proxy.faults.length, 0);
      if (fault === "hang") assert.ok(proxy.requests >= 3 && notes.length === proxy.requests - 1, notes.join("; "));
      else assert.equal(proxy.requests, 3);
      if (fault !== "hang") assert.equal(notes.length, 2, notes.join("; "));
      assert.equal(lines.length, 2);
      assert.ok(lines.every((l) => l.finish === "stop" && l.tokens!.length > 0));
      assert.ok(proxy.authorizations.every((h) => h === `Bearer ${KEY}`));
      assert.ok(!notes.join(" ").includes(KEY));
    });
  }

  it("honours Retry-After on a 429", async () => {
    const client = new CompletionsClient({ url: proxy.url, retry: FAST });
    proxy.faults = ["429"];
    proxy.retryAfterS = "1";
    const t0 = Date.now();
    await client.completeLines(request(prompts.slice(0, 1)));
    assert.ok(Date.now() - t0 >= 950, `retried after ${Date.now() - t0} ms`);
    assert.equal(proxy.requests, 2);
  });

  for (const [fault, reason] of [
    ["503", /503 Service Unavailable after 3 tries/],
    ["malformed", /malformed JSON in a 200 response .* after 3 tries/],
    ["hang", /no response within 300 ms after 3 tries/],
    ["close", /connection closed by the server \(UND_ERR_SOCKET\) after 3 tries|connection reset .* after 3 tries/],
    ["429", /429 Too Many Requests after 3 tries/],
  ] as const) {
    it(`fails with one RemoteServerError naming the URL, not the key, when ${fault} persists`, async () => {
      // A short timeout only where the fault is a hang: the others go through llama-server, which a busy
      // machine can keep past 300 ms (a malformed case once timed out so under a parallel test run).
      const timeoutMs = fault === "hang" ? 300 : 10000;
      const client = new CompletionsClient({ url: `${proxy.url}/v1`, apiKey: KEY, retry: { ...FAST, maxTries: 3, timeoutMs } });
      proxy.persistent = fault;
      const err = await client.completeLines(request(prompts.slice(0, 3))).then(
        () => assert.fail("should fail"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof RemoteServerError, String(err));
      assert.ok(err.message.startsWith(`${proxy.url}/v1/completions: `), err.message);
      assert.match(err.message, reason);
      assert.ok(!err.message.includes(KEY) && !String(err.stack).includes(KEY));
      assert.equal(err.tries, 3);
      assert.equal(proxy.requests, 3);
    });
  }

  it("does not retry a 400, and names the server's message", async () => {
    const client = new CompletionsClient({ url: proxy.url, apiKey: KEY, retry: FAST });
    proxy.persistent = "400";
    await assert.rejects(client.completeLines(request(prompts.slice(0, 1))), (e: unknown) => {
      assert.ok(e instanceof RemoteServerError);
      assert.equal(e.message, `${proxy.url}/v1/completions: 400 Bad Request: injected 400`);
      return true;
    });
    assert.equal(proxy.requests, 1);
  });

  it("fails after its tries on a server that is down (connection refused), naming the URL", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const client = new CompletionsClient({ url, retry: { ...FAST, maxTries: 2 } });
    await assert.rejects(client.completeLines(request(prompts.slice(0, 1))), {
      name: "RemoteServerError",
      message: `${url}/v1/completions: connection refused (ECONNREFUSED) after 2 tries`,
    });
  });

  it("aborts a request in flight at once and retries nothing after it", async () => {
    const client = new CompletionsClient({ url: proxy.url, retry: { ...FAST, timeoutMs: 30000 } });
    proxy.persistent = "hang";
    const controller = new AbortController();
    const pending = client.completeLines(request(prompts.slice(0, 4)), { signal: controller.signal });
    while (proxy.requests === 0) await new Promise((r) => setTimeout(r, 5));
    const t0 = Date.now();
    controller.abort();
    await assert.rejects(pending, { name: "AbortError" });
    assert.ok(Date.now() - t0 < 1000, `rejected ${Date.now() - t0} ms after the abort`);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(proxy.requests, 1, "no retry after the abort");
    assert.equal(client.inFlight, 0);
    // An already-aborted signal sends nothing.
    await assert.rejects(client.completeLines(request(prompts.slice(0, 1)), { signal: AbortSignal.abort() }), { name: "AbortError" });
    assert.equal(proxy.requests, 1);
  });

  it("keeps at most maxConcurrent requests in flight over all calls of one client", async () => {
    const client = new CompletionsClient({ url: proxy.url, maxConcurrent: 2 });
    proxy.delayMs = 150;
    const results = await Promise.all(prompts.slice(0, 6).map((p) => client.completeLines(request([p]))));
    assert.equal(proxy.requests, 6);
    assert.equal(proxy.maxInFlight, 2);
    assert.ok(results.every((r) => r.lines[0].finish === "stop"));
    // Without the limit the same calls overlap further.
    proxy.reset();
    proxy.delayMs = 150;
    const wide = new CompletionsClient({ url: proxy.url, maxConcurrent: 8 });
    await Promise.all(prompts.slice(0, 6).map((p) => wide.completeLines(request([p]))));
    assert.ok(proxy.maxInFlight > 2, `max in flight ${proxy.maxInFlight}`);
  });
});
