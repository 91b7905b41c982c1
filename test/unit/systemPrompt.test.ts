/**
 * The user's system prompt end to end: `--system` on solve, sample and eval, and the engine server's
 * ModelSettings.systemPrompt (the twistedSmc.systemPrompt setting), on the shipped model (no chat
 * template: refused in one line) and on a copy of it with a chat template (taken, per request).
 */
import assert from "node:assert/strict";
import { ChildProcess, spawn, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createMessageConnection, MessageConnection, ResponseError, StreamMessageReader, StreamMessageWriter } from "vscode-jsonrpc/node";
import { ErrorCodes, Methods, SolveParams } from "../../src/protocol/protocol";
import { MODEL_DIR } from "./helpers";

const CLI = join(__dirname, "../../dist/cli.js");
const ENGINE = join(__dirname, "../../dist/engine.js");
const run = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 60000 });
const PROBLEM = "Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?";
const SYSTEM = "Answer with care.";
const NO_TEMPLATE = /tiny-math-llama has no chat template, so it takes no system prompt/;

describe("the system prompt (--system, twistedSmc.systemPrompt)", function () {
  this.timeout(120000);
  const tmp = mkdtempSync(join(tmpdir(), "tsmc-system-"));
  /** The shipped model with a chat template written in its own vocabulary's words. */
  const templated = join(tmp, "templated");
  cpSync(MODEL_DIR, templated, { recursive: true });
  const configPath = join(templated, "tokenizer_config.json");
  writeFileSync(
    configPath,
    JSON.stringify({
      ...JSON.parse(readFileSync(configPath, "utf8")),
      chat_template:
        "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}{{ m.content }}\n{% else %}Question: {{ m.content }}\nAnswer:\n{% endif %}{% endfor %}",
    }),
  );
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it("is refused in one line, exit code 3, by solve, sample and eval on a model without a chat template", () => {
    for (const args of [
      ["solve", PROBLEM, "--twist", "none", "--particles", "2", "--max-tokens", "8", "--threads", "1"],
      ["sample", PROBLEM, "-k", "1", "--max-tokens", "8", "--threads", "1"],
      ["eval", "--n", "1", "--particles", "2", "--max-tokens", "8", "--no-bounds", "--threads", "1"],
    ]) {
      const r = run([...args, "--system", SYSTEM]);
      assert.equal(r.status, 3, `${args[0]}: ${r.stderr}`);
      assert.match(r.stderr, NO_TEMPLATE);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    }
  });

  it("goes into the prompt through the chat template (sample's prompt grows by its tokens)", () => {
    const tokens = (extra: string[]) => {
      const r = run(["sample", PROBLEM, "--model", templated, "-k", "1", "--max-tokens", "4", "--threads", "1", "--json", ...extra]);
      assert.equal(r.status, 0, r.stderr);
      return (JSON.parse(r.stdout) as { timing: { promptTokens: number } }).timing.promptTokens;
    };
    const plain = tokens([]);
    assert.ok(tokens(["--system", SYSTEM]) > plain);
    assert.equal(tokens(["--system", "  "]), plain, "a blank system prompt is none");
    const r = run([
      "solve",
      PROBLEM,
      "--model",
      templated,
      "--twist",
      "none",
      "--particles",
      "2",
      "--max-tokens",
      "8",
      "--threads",
      "1",
      "--system",
      SYSTEM,
    ]);
    assert.equal(r.status, 0, r.stderr);
  });

  describe("over JSON-RPC", () => {
    let child: ChildProcess;
    let conn: MessageConnection;
    before(async () => {
      child = spawn(process.execPath, [ENGINE, "--stdio"], { stdio: ["pipe", "pipe", "inherit"] });
      conn = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
      conn.listen();
      await conn.sendRequest("initialize", { processId: process.pid, rootUri: null, capabilities: {} });
      conn.sendNotification("initialized", {});
    });
    after(() => {
      conn.dispose();
      child.kill();
    });
    const params = (model: string, systemPrompt?: string): SolveParams => ({
      runId: "run-system",
      problem: PROBLEM,
      model: { model, twist: "none", device: "cpu", ...(systemPrompt !== undefined ? { systemPrompt } : {}) },
      smc: { particles: 2, level: "token", resampling: "systematic", essThreshold: 0.5, maxTokens: 8, temperature: 1, seed: 0 },
    });

    it("refuses it as an input error on a model without a chat template; an empty one is none", async () => {
      await assert.rejects(
        conn.sendRequest(Methods.solve, params("", SYSTEM)),
        (e: ResponseError<void>) => e.code === ErrorCodes.inputError && NO_TEMPLATE.test(e.message) && !e.message.includes("\n"),
      );
      const r = await conn.sendRequest(Methods.solve, params("", ""));
      assert.equal(r.particles.length, 2);
    });

    it("takes it per request on a model with a chat template; the same model stays loaded", async () => {
      await conn.sendRequest(Methods.solve, params(templated));
      const before = await conn.sendRequest(Methods.status);
      const r = await conn.sendRequest(Methods.solve, params(templated, SYSTEM));
      assert.equal(r.particles.length, 2);
      const after = await conn.sendRequest(Methods.status);
      assert.equal(after.model, before.model);
      assert.equal(after.model, templated);
    });
  });
});
