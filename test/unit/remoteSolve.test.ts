/**
 * Solving through an OpenAI-compatible inference server (issue 20): step-level twisted SMC whose lines
 * come from llama.cpp's llama-server serving the shipped model (llamaServerFixture.ts; the suite skips
 * without its root unless TWISTED_SMC_REQUIRE_LLAMA_SERVER=1), behind a local proxy that counts,
 * records and injects faults (faultProxy.ts). Through the engine's own entry points: solve(), the
 * bundled CLI (exit codes, one-line errors, the API key) and the engine process over JSON-RPC.
 */
import assert from "node:assert/strict";
import { ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createMessageConnection, MessageConnection, ResponseError, StreamMessageReader, StreamMessageWriter } from "vscode-jsonrpc/node";
import { ErrorCodes, Methods, SolveParams } from "../../src/protocol/protocol";
import { synthesize } from "../../src/engine/math/problems";
import { openRemoteModel, RemoteModel, remoteTwistFolder } from "../../src/engine/remote/remoteModel";
import { defaultModelDir, openTokenizerFolder } from "../../src/engine/lm/model/modelFolder";
import { TextTokenizer } from "../../src/engine/lm/model/tokenizer";
import { RemoteServerError } from "../../src/engine/remote/retry";
import { lineSmcRefusal, runLineSmc } from "../../src/engine/smc/lineSmc";
import { SmcCancelled } from "../../src/engine/smc/twistedSmc";
import { ValueTwistHead } from "../../src/engine/twist/heads";
import { loadRemoteTwistOption } from "../../src/engine/twist/resolve";
import { DEFAULT_SOLVE_OPTIONS, solve, SolveOptions } from "../../src/engine/solve";
import { FaultProxy } from "./faultProxy";
import { writeModelFolder } from "../../scripts/fixtures/realLayouts";
import { InputError } from "../../src/engine/util/errors";
import { freePort, LlamaServer, startLlamaServer } from "./llamaServerFixture";

const CLI = join(__dirname, "../../dist/cli.js");
const ENGINE = join(__dirname, "../../dist/engine.js");
const KEY = "sk-remote-test-key-9876543210";
const FAST = { backoffMs: 20, maxBackoffMs: 80, timeoutMs: 30000, maxTries: 3 };
const SMC: SolveOptions = { ...DEFAULT_SOLVE_OPTIONS }; // 16 particles, step level, temperature 1

/** The bundled CLI, run without blocking this process (the proxy answers from its event loop). */
async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args], {
      env: { ...process.env, OPENAI_API_KEY: "", ...env },
      timeout: 60000,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe("solving through an OpenAI-compatible server (llama-server, the shipped model)", function () {
  this.timeout(120000);
  let server: LlamaServer | undefined;
  let proxy: FaultProxy;
  let model: RemoteModel;
  const problems = synthesize("test", 8, 3).map((p) => p.question);
  /** The shipped model's tokenizer, read here: what the server's own formatting must agree with. */
  const local = TextTokenizer.fromFolder(openTokenizerFolder(defaultModelDir()));

  before(async function () {
    server = await startLlamaServer(this);
    proxy = new FaultProxy(server.base);
    await proxy.start();
    model = openRemoteModel({ url: proxy.url, serverModel: "tiny-math-llama", retry: FAST });
  });
  after(async () => {
    await server?.close();
    await proxy?.stop();
  });
  beforeEach(() => proxy?.reset());
  /** The /v1/completions bodies the proxy saw (a /tokenize body's prompt is a string). */
  const completions = () => proxy.bodies.filter((b) => Array.isArray(b.prompt));

  /** The problem a request's prompts belong to: every prompt must start with that one problem's prompt. */
  const problemOf = (body: Record<string, unknown>): number => {
    const prompts = body.prompt as number[][];
    const owners = new Set(prompts.map((p) => problems.findIndex((q) => local.encodeProblem(q).every((t, i) => p[i] === t))));
    assert.equal(owners.size, 1, "a request never mixes the particles of two problems");
    return [...owners][0];
  };

  it("solves with the line-verifier twist: the record, the vote and the requests as the local backend gives them", async () => {
    const twist = await loadRemoteTwistOption(undefined, remoteTwistFolder(model), "step");
    assert.ok(twist, "the shipped model's line verifier");
    const r = await solve(model, problems[0], { ...SMC, twist: twist.twist, twistName: twist.name, record: true });
    assert.equal(r.device, "server");
    assert.equal(r.server, `${proxy.url}/v1/completions (tiny-math-llama)`);
    assert.equal(r.particles.length, 16);
    assert.ok(r.answer !== null && r.probability > 0, "an answer with its posterior");
    assert.equal(r.record!.steps.length, r.steps);
    assert.ok(
      r.record!.steps.every((s) => s.kind === "line"),
      "step level: one record per line",
    );
    // Replaying the record's texts along the parents rebuilds every final text, as the panel does.
    let texts = Array.from({ length: 16 }, () => "");
    for (const s of r.record!.steps) texts = s.particles.map((p) => texts[p.parent] + p.text);
    assert.deepEqual(
      texts,
      r.particles.map((p) => p.text),
    );
    const asked = completions();
    assert.equal(r.timing.requests, asked.length, "every request counted");
    assert.ok(asked.length <= r.steps * 16 && asked.length >= r.steps, `${asked.length} requests for ${r.steps} steps`);
    for (const body of asked) {
      assert.equal(problemOf(body), 0);
      assert.deepEqual(body.stop, ["\n"]);
      assert.equal(body.temperature, 1);
      assert.equal(body.top_p, 1);
      assert.equal(body.model, "tiny-math-llama");
    }
  });

  it("without tokenizer files, the server formats the prompt: its template, its ids, its texts", async () => {
    const fresh = openRemoteModel({ url: proxy.url, retry: FAST }); // asks /props once, for its first solve
    const r = await solve(fresh, problems[0], { ...SMC, record: true });
    assert.equal(r.formattedByServer, true);
    assert.equal(r.record!.prompt, local.promptText(problems[0]), "the server's chat template writes the model's prompt format");
    assert.ok(proxy.paths.includes("/apply-template") && proxy.paths.includes("/props"), proxy.paths.join(" "));
    const prompts = completions().map((b) => (b.prompt as number[][])[0]);
    assert.deepEqual(prompts[0], local.encodeProblem(problems[0]), "the server's ids are the model's tokenizer's");
    assert.ok(
      completions().every((b) => b.return_token_ids === true),
      "ids asked for (vLLM returns them only then)",
    );
    // The particles' texts are the server's texts of their ids: the same as the model's tokenizer decodes them.
    for (const p of r.particles) assert.equal(fresh.text.decode(local.encode(p.text)), p.text);
    const served = await Promise.all(problems.map((q) => fresh.text.prompt(q, 96)));
    served.forEach((p, i) => assert.deepEqual(p.prompt, local.encodeProblem(problems[i]), `problem ${i}`));
    assert.deepEqual(fresh.text.eosTokenIds, local.eosTokenIds);
    assert.deepEqual(fresh.text.lineBreak, local.encode("\n"));
  });

  it("with tokenizer files, encodes the prompt here and asks the server for lines only", async () => {
    const files = openRemoteModel({ url: proxy.url, tokenizer: defaultModelDir(), retry: FAST });
    const r = await solve(files, problems[1], { ...SMC, record: true });
    assert.equal(r.formattedByServer, undefined);
    assert.equal(r.model, "tiny-math-llama");
    assert.ok(!proxy.paths.includes("/apply-template") && !proxy.paths.includes("/props"), proxy.paths.join(" "));
    assert.deepEqual((completions()[0].prompt as number[][])[0], local.encodeProblem(problems[1]));
    assert.equal(completions()[0].return_token_ids, undefined, "nothing a strict server could reject");
  });

  it("refuses, with what to pass, a server that formats no chats or returns no token ids", async () => {
    proxy.missing = new Set(["/apply-template", "/tokenize"]); // a server without them (TGI, a hosted API)
    const bare = openRemoteModel({ url: proxy.url, retry: FAST });
    await assert.rejects(solve(bare, problems[2], SMC), (e: Error) => {
      assert.ok(e instanceof InputError, String(e));
      assert.match(e.message, /does not format chats for a client .*pass --model/);
      return true;
    });
    assert.equal(completions().length, 0, "refused before any line");
    proxy.reset();
    proxy.stripLogprobs = true;
    const noIds = openRemoteModel({ url: proxy.url, retry: FAST });
    await assert.rejects(solve(noIds, problems[2], SMC), (e: Error) => {
      assert.ok(e instanceof InputError, String(e));
      assert.match(e.message, /returns no token ids with the texts of its lines .*pass --model/);
      return true;
    });
    // With the model's tokenizer files the same server serves: a line's ids are then encoded here.
    const files = openRemoteModel({ url: proxy.url, tokenizer: defaultModelDir(), retry: FAST });
    const r = await solve(files, problems[2], SMC);
    assert.equal(r.particles.length, 16);
    assert.ok(r.answer !== null);
  });

  it("runs 8 solves at once, overlapping their requests, each with its own problem's particles", async () => {
    proxy.delayMs = 30; // holds each request long enough for the others to arrive
    const results = await Promise.all(problems.map((q, i) => solve(model, q, { ...SMC, seed: i, record: true })));
    results.forEach((r, i) => {
      assert.equal(r.problem, problems[i]);
      assert.equal(r.record!.prompt, local.promptText(problems[i]));
    });
    const seen = new Set(completions().map(problemOf));
    assert.equal(seen.size, 8, "every problem asked");
    assert.ok(proxy.maxInFlight > 1, `requests overlapped (at most ${proxy.maxInFlight} in flight)`);
    assert.ok(proxy.maxInFlight <= 8, "within the client's limit of 8");
  });

  it("cancels mid-solve: the request in flight is aborted and nothing more is sent", async () => {
    proxy.delayMs = 400;
    const controller = new AbortController();
    const started = performance.now();
    const pending = solve(model, problems[1], { ...SMC, signal: controller.signal });
    while (proxy.requests === 0) await new Promise((r) => setTimeout(r, 5));
    controller.abort();
    await assert.rejects(pending, SmcCancelled);
    assert.ok(performance.now() - started < 400 + 300, "ended before the request would have answered");
    const sent = proxy.requests;
    for (const deadline = Date.now() + 5000; proxy.aborted === 0 && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 10));
    assert.equal(proxy.aborted, 1, "the request in flight was closed by the client");
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(proxy.requests, sent, "no request after the cancel");
  });

  it("retries a 429, a 503 and a malformed body, then solves", async () => {
    const notes: string[] = [];
    const patient = openRemoteModel({ url: proxy.url, retry: { ...FAST, maxTries: 4 }, onRetry: (n) => notes.push(n.reason) });
    proxy.faults = ["429", "503", "malformed"];
    const r = await solve(patient, problems[2], SMC);
    assert.equal(notes.length, 3, notes.join("; "));
    assert.match(notes[0], /429/);
    assert.match(notes[1], /503/);
    assert.ok(r.particles.length === 16 && r.answer !== null);
  });

  it("gives one clear error naming the URL when the server is killed mid-solve, and solves again once it is back", async () => {
    proxy.delayMs = 150;
    const keyed = openRemoteModel({ url: proxy.url, apiKey: KEY, retry: FAST });
    const pending = solve(keyed, problems[3], SMC);
    while (proxy.requests === 0) await new Promise((r) => setTimeout(r, 5));
    const killed = server!.stop("SIGKILL");
    await assert.rejects(pending, (e: Error) => {
      assert.ok(e instanceof RemoteServerError, String(e));
      assert.ok(e.message.startsWith(`${proxy.url}/`), e.message);
      assert.ok(!e.message.includes(KEY));
      return true;
    });
    await killed;
    await server!.restart();
    proxy.delayMs = 0;
    const r = await solve(keyed, problems[3], SMC);
    assert.equal(r.particles.length, 16);
    assert.ok(proxy.authorizations.every((h) => h === `Bearer ${KEY}`));
  });

  it("refuses a tokenizer that is not the served model's before asking for a line, with what to pass", async () => {
    const dir = mkdtempSync(join(tmpdir(), "remote-qwen-"));
    try {
      writeModelFolder(dir, "qwen2.5");
      const wrong = openRemoteModel({ url: proxy.url, tokenizer: dir, retry: FAST });
      await assert.rejects(solve(wrong, problems[0], SMC), (e: Error) => {
        assert.ok(e instanceof InputError, String(e));
        assert.match(e.message, /^the server's model does not use remote-qwen-\w+'s tokenizer .*pass --model/);
        return true;
      });
      assert.equal(completions().length, 0, "only /tokenize was asked");
      assert.equal(proxy.requests, 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses what needs the model's internals, in one line each, before any request", async () => {
    const base = { ...SMC, text: local };
    const sent = proxy.requests;
    const proposer = { proposeLines: () => Promise.reject(new Error("no request may be made")) };
    await assert.rejects(
      runLineSmc(proposer, [1], { ...base, level: "token" }),
      /token-level SMC needs the model's next-token distribution/,
    );
    await assert.rejects(runLineSmc(proposer, [1], { ...base, temperature: 0.7 }), /temperature 1/);
    await assert.rejects(runLineSmc(proposer, [1], { ...base, clamp: [5] }), /conditional SMC/);
    const valueHead = new ValueTwistHead({ hiddenSize: 4, w: new Float32Array(4), u: new Float32Array(2), c: Float32Array.of(0) });
    await assert.rejects(runLineSmc(proposer, [1], { ...base, twist: valueHead }), /reads the model's hidden states/);
    assert.equal(lineSmcRefusal({ level: "step", temperature: 1 }), undefined);
    assert.equal(proxy.requests, sent);
  });

  describe("the CLI", () => {
    it("solve --server: the answer with the server named; the key sent as a Bearer header and nowhere else", async () => {
      const dir = mkdtempSync(join(tmpdir(), "remote-cli-"));
      try {
        const record = join(dir, "run.json");
        const r = await cli(["solve", problems[4], "--server", proxy.url, "--json", "--record", record], { OPENAI_API_KEY: KEY });
        assert.equal(r.code, 0, r.stderr);
        const out = JSON.parse(r.stdout);
        assert.equal(out.device, "server");
        assert.equal(out.server, `${proxy.url}/v1/completions`);
        assert.equal(out.particles.length, 16);
        assert.ok(proxy.authorizations.length > 0 && proxy.authorizations.every((h) => h === `Bearer ${KEY}`));
        for (const text of [r.stdout, r.stderr, readFileSync(record, "utf8")]) assert.ok(!text.includes(KEY));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("sample and eval --backend openai", async () => {
      const s = await cli(["sample", problems[5], "--backend", "openai", "--server", proxy.url, "-k", "6", "--json"]);
      assert.equal(s.code, 0, s.stderr);
      const sample = JSON.parse(s.stdout);
      assert.equal(sample.samples.length, 6);
      assert.equal(sample.timing.requests, 1, "six copies of one prompt: one request");
      const e = await cli(["eval", "--server", proxy.url, "--n", "6", "--particles", "8", "--concurrency", "3", "--json"]);
      assert.equal(e.code, 0, e.stderr);
      const table = JSON.parse(e.stdout);
      assert.equal(table.n, 6);
      assert.equal(table.concurrency, 3);
      assert.ok(table.rows.some((row: { method: string }) => row.method === "weighted vote over step-level twisted-SMC particles"));
      assert.ok(!table.rows.some((row: { method: string }) => /token level/.test(row.method)));
      assert.equal(table.bounds, undefined);
    });

    it("refuses flags the server cannot honour with one line and exit 2", async () => {
      const cases: [string[], RegExp][] = [
        [["--level", "token"], /token-level SMC needs the model's next-token distribution/],
        [["--temperature", "0.7"], /temperature 1/],
        [["--device", "cpu"], /--device chooses how a local model runs/],
        [["--backend", "local"], /--server is for --backend openai/],
      ];
      for (const [flags, message] of cases) {
        const r = await cli(["solve", "2 + 2", "--server", proxy.url, ...flags]);
        assert.equal(r.code, 2, `${flags.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, message);
        assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      }
      const noUrl = await cli(["solve", "2 + 2", "--backend", "openai"]);
      assert.equal(noUrl.code, 2);
      assert.match(noUrl.stderr, /needs --server URL/);
      const badUrl = await cli(["solve", "2 + 2", "--server", "localhost:8080"]);
      assert.equal(badUrl.code, 2);
      assert.match(badUrl.stderr, /not an http\(s\) URL|not a URL/);
    });

    it("exits 5 with one line naming the URL when no server answers", async () => {
      const port = await freePort();
      const r = await cli(["solve", "2 + 2", "--server", `http://127.0.0.1:${port}`], { OPENAI_API_KEY: KEY });
      assert.equal(r.code, 5, r.stderr);
      const lines = r.stderr.trim().split("\n");
      assert.match(
        lines[lines.length - 1],
        new RegExp(`^twisted-smc: the inference server failed: http://127.0.0.1:${port}/(props|tokenize|v1/completions): .*refused`),
      );
      assert.ok(!r.stderr.includes("    at "), "no stack trace");
      assert.ok(!r.stderr.includes(KEY));
    });
  });

  describe("the engine process (what the editor runs)", () => {
    let child: ChildProcess;
    let conn: MessageConnection;
    const params = (over: Partial<SolveParams["model"]> = {}, smc: Partial<SolveParams["smc"]> = {}): SolveParams => ({
      runId: "remote-1",
      problem: problems[6],
      model: { model: "", twist: "", device: "auto", backend: "openai", server: { url: proxy.url, model: "tiny-math-llama" }, ...over },
      smc: { particles: 8, level: "step", resampling: "systematic", essThreshold: 0.5, maxTokens: 96, temperature: 1, seed: 0, ...smc },
    });
    before(async () => {
      child = spawn(process.execPath, [ENGINE, "--stdio"], {
        stdio: ["pipe", "pipe", "inherit"],
        env: { ...process.env, OPENAI_API_KEY: KEY },
      });
      conn = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
      conn.listen();
      await conn.sendRequest("initialize", { processId: process.pid, rootUri: null, capabilities: {} });
      conn.sendNotification("initialized", {});
    });
    after(() => {
      conn?.dispose();
      child?.kill();
    });

    it("solves on the server with the shipped twist, names the server in the result and the status", async () => {
      const r = await conn.sendRequest(Methods.solve, params());
      assert.equal(r.device, "server");
      assert.equal(r.server, `${proxy.url}/v1/completions (tiny-math-llama)`);
      assert.match(r.twist ?? "", /twist-step\.json$/);
      assert.equal(r.particles.length, 8);
      const status = await conn.sendRequest(Methods.status);
      assert.equal(status.server, r.server);
      assert.equal(status.device, "server");
      assert.ok(proxy.authorizations.every((h) => h === `Bearer ${KEY}`));
    });

    it("answers token level with an input error, an unreachable server with a server error, and goes on", async () => {
      await assert.rejects(conn.sendRequest(Methods.solve, params({}, { level: "token" })), (e: ResponseError<void>) => {
        assert.equal(e.code, ErrorCodes.inputError);
        assert.match(e.message, /twistedSmc.level step/);
        return true;
      });
      const port = await freePort();
      await assert.rejects(
        conn.sendRequest(Methods.solve, params({ server: { url: `http://127.0.0.1:${port}`, model: "" } })),
        (e: ResponseError<void>) => {
          assert.equal(e.code, ErrorCodes.serverError);
          assert.match(
            e.message,
            new RegExp(`^the inference server failed: http://127.0.0.1:${port}/(props|tokenize|v1/completions): .*refused`),
          );
          assert.ok(!e.message.includes(KEY));
          return true;
        },
      );
      const r = await conn.sendRequest(Methods.solve, params());
      assert.equal(r.particles.length, 8);
    });
  });
});
