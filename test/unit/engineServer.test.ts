import assert from "node:assert/strict";
import { ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import {
  CancellationTokenSource,
  createMessageConnection,
  MessageConnection,
  ResponseError,
  StreamMessageReader,
  StreamMessageWriter,
} from "vscode-jsonrpc/node";
import { ErrorCodes, Methods, SolveParams, StepParams } from "../../src/protocol/protocol";

const ENGINE = join(__dirname, "../../dist/engine.js");
const PROBLEM =
  "A class collects 398 marbles. Each of those marbles is traded for 2 new ones. 205 of the marbles are broken and thrown away. How many marbles are left in the end?";

function solveParams(over: Partial<SolveParams> = {}): SolveParams {
  return {
    runId: "run-1",
    problem: PROBLEM,
    model: { model: "", twist: "none", device: "cpu" },
    smc: { particles: 8, level: "token", resampling: "systematic", essThreshold: 0.5, maxTokens: 96, temperature: 1, seed: 0 },
    ...over,
  };
}

describe("the engine process over JSON-RPC", function () {
  this.timeout(60000);
  let child: ChildProcess;
  let conn: MessageConnection;
  const steps: StepParams[] = [];

  before(async () => {
    child = spawn(process.execPath, [ENGINE, "--stdio"], { stdio: ["pipe", "pipe", "inherit"] });
    conn = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
    conn.onNotification(Methods.step, (p) => void steps.push(p));
    conn.listen();
    await conn.sendRequest("initialize", { processId: process.pid, rootUri: null, capabilities: {} });
    conn.sendNotification("initialized", {});
  });
  after(() => {
    conn.dispose();
    child.kill();
  });

  it("solves, streaming one notification per SMC step that matches the final record", async () => {
    steps.length = 0;
    const r = await conn.sendRequest(Methods.solve, solveParams());
    assert.equal(r.runId, "run-1");
    assert.ok(r.particles.length === 8 && r.posterior.length > 0);
    assert.equal(steps.length, r.record.steps.length);
    assert.deepEqual(
      steps.map((s) => s.step),
      r.record.steps,
    );
    assert.ok(steps.every((s) => s.runId === "run-1"));
  });

  it("reports its status: model, device and why", async () => {
    const s = await conn.sendRequest(Methods.status);
    assert.match(s.model ?? "", /tiny-math-llama$/);
    assert.match(s.device ?? "", /^cpu/);
    assert.equal(s.busy, false);
    assert.equal(s.pid, child.pid);
  });

  it("cancels a run within a step, then solves again", async () => {
    const source = new CancellationTokenSource();
    steps.length = 0;
    const pending = conn.sendRequest(
      Methods.solve,
      solveParams({ runId: "run-2", smc: { ...solveParams().smc, particles: 64, maxTokens: 96 } }),
      source.token,
    );
    while (steps.length < 2) await new Promise((r) => setTimeout(r, 5));
    source.cancel();
    const seenAtCancel = steps.length;
    await assert.rejects(pending, (e: ResponseError<void>) => e.code === ErrorCodes.cancelled);
    // Steps already on their way when the cancel arrived still land; the run stops at the next step.
    assert.ok(steps.length < seenAtCancel + 10, `stopped promptly (${seenAtCancel} → ${steps.length})`);
    const again = await conn.sendRequest(Methods.solve, solveParams({ runId: "run-3" }));
    assert.equal(again.runId, "run-3");
  });

  it("finishes a solve on a model whose settings changed meanwhile; the old model is let go after it", async () => {
    const long = conn.sendRequest(Methods.solve, solveParams({ runId: "run-long", smc: { ...solveParams().smc, particles: 64 } }));
    while (!steps.some((s) => s.runId === "run-long")) await new Promise((r) => setTimeout(r, 5));
    // The same model by another name is another setting: the engine loads it and retires the first.
    const shipped = join(__dirname, "../../models/tiny-math-llama");
    const other = await conn.sendRequest(
      Methods.solve,
      solveParams({ runId: "run-other", model: { model: shipped, twist: "none", device: "cpu" } }),
    );
    assert.equal(other.runId, "run-other");
    const first = await long;
    assert.equal(first.particles.length, 64);
    const s = await conn.sendRequest(Methods.status);
    assert.equal(s.model, shipped);
  });

  it("refuses a problem longer than the model's context before any work, as an input error", async () => {
    const problem = `${"Ava has 12 pens and gives some away. ".repeat(200)}How many pens does Ava have now?`;
    await assert.rejects(
      conn.sendRequest(Methods.solve, solveParams({ problem })),
      (e: ResponseError<void>) =>
        e.code === ErrorCodes.inputError && /prompt is \d+ tokens, but tiny-math-llama reads at most 512/.test(e.message),
    );
    const huge = "7 ".repeat(500_000);
    const t0 = performance.now();
    await assert.rejects(
      conn.sendRequest(Methods.solve, solveParams({ problem: huge })),
      (e: ResponseError<void>) =>
        e.code === ErrorCodes.inputError && /999,999 characters, far more than tiny-math-llama can read/.test(e.message),
    );
    assert.ok(performance.now() - t0 < 5000, "refused at once");
    const capped = await conn.sendRequest(
      Methods.solve,
      solveParams({ runId: "run-cap", smc: { ...solveParams().smc, maxTokens: 100000 } }),
    );
    assert.match(capped.warnings?.[0] ?? "", /max tokens lowered from 100000 to \d+/);
  });

  it("answers malformed requests with an error naming the field", async () => {
    const cases: [unknown, RegExp][] = [
      [{ ...solveParams(), problem: "   " }, /problem text is empty/],
      [{ ...solveParams(), smc: { ...solveParams().smc, particles: 0 } }, /particles must be an integer/],
      [{ ...solveParams(), smc: { ...solveParams().smc, level: "word" } }, /level must be token or step/],
      [{ runId: "x" }, /problem text is empty/],
      [{ runId: "x", problem: "Ava has 3 pens. How many?" }, /model must be/],
      [{ ...solveParams(), smc: { ...solveParams().smc, seed: -1 } }, /seed must be an integer >= 0/],
    ];
    for (const [params, message] of cases) {
      await assert.rejects(
        conn.sendRequest(Methods.solve, params as SolveParams),
        (e: ResponseError<void>) => e.code === -32602 && message.test(e.message),
      );
    }
    await assert.rejects(
      conn.sendRequest(Methods.solve, solveParams({ model: { model: "/nonexistent/model", twist: "none", device: "cpu" } })),
      (e: ResponseError<void>) => e.code === ErrorCodes.inputError && /does not exist/.test(e.message),
    );
  });
});
