import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { synthesize } from "../../src/engine/math/problems";
import { SmcRecord } from "../../src/protocol/record";
import { SolveResult } from "../../src/engine/solve";

/** The bundled CLI, exactly as users run it (npm test builds it first). */
const CLI = join(__dirname, "../../dist/cli.js");
const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 60000 });
const PROBLEM = "Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?";

describe("twisted-smc command line", function () {
  this.timeout(60000);
  const tmp = mkdtempSync(join(tmpdir(), "tsmc-cli-"));

  it("data synth writes the generator's problems as GSM8K JSONL", () => {
    const r = run("data", "synth", "--split", "test", "--n", "5", "--seed", "2");
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      lines,
      synthesize("test", 5, 2).map((p) => ({ question: p.question, answer: p.answer })),
    );
    const out = join(tmp, "train.jsonl");
    assert.equal(run("data", "synth", "--split", "train", "--n", "3", "--out", out).status, 0);
    assert.equal(readFileSync(out, "utf8").trim().split("\n").length, 3);
  });

  it("solve says how sure it is, and that a problem unlike the shipped model's training is a guess", () => {
    const gsm8k =
      "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. How much in dollars does she make every day at the farmers' market?";
    const r = run("solve", gsm8k, "--threads", "1");
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stdout,
      /\n {9}⚠ tiny-math-llama is out of its depth here: .* \d+ of this problem's \d+ words \("janet", "ducks", "lay", …\) are new to it, so its answer is a guess/,
    );
    const json = JSON.parse(run("solve", gsm8k, "--threads", "1", "--json").stdout) as SolveResult;
    assert.match(json.confidence.outOfDepth ?? "", /out of its depth/);
    const own = run("solve", PROBLEM, "--threads", "1", "--max-tokens", "100000");
    assert.doesNotMatch(own.stdout, /out of its depth/);
    assert.match(own.stdout, /Answer: {2}\d+ (\(posterior|— uncertain|.* tied at)/);
    assert.match(
      own.stdout,
      /Warning: max tokens lowered from 100000 to \d+: the \d+-token prompt and the answer must fit tiny-math-llama's 512-token context/,
    );
  });

  it("sample caps its tokens at the model's context, saying so", () => {
    const r = run("sample", PROBLEM, "-k", "1", "--max-tokens", "100000", "--threads", "1", "--json");
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /max tokens lowered from 100000 to \d+/);
  });

  it("sample --json prints K samples with their answers", () => {
    const r = run("sample", PROBLEM, "-k", "4", "--seed", "1", "--json", "--threads", "1");
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.samples.length, 4);
    assert.match(report.device, /^cpu/);
    assert.equal(
      report.answers.reduce((n: number, a: { count: number }) => n + a.count, 0),
      report.samples.filter((s: { answer: string | null }) => s.answer !== null).length,
    );
  });

  it("solve --json gives the answer, posterior, log Ẑ, ESS and particles, and a record that replays them", () => {
    const recordFile = join(tmp, "run.json");
    const r = run(
      "solve",
      PROBLEM,
      "--particles",
      "8",
      "--seed",
      "3",
      "--json",
      "--record",
      recordFile,
      "--threads",
      "1",
      "--resample",
      "always",
    );
    assert.equal(r.status, 0, r.stderr);
    const result: SolveResult = JSON.parse(r.stdout);
    assert.equal(result.particles.length, 8);
    const total = result.posterior.reduce((a, p) => a + p.probability, 0) + result.unanswered;
    assert.ok(Math.abs(total - 1) < 1e-9);
    assert.equal(result.answer, result.posterior[0]?.answer ?? null);
    assert.equal(result.ess.length, result.steps);
    assert.ok(result.resampledAt.length > 0);
    assert.equal(typeof result.logZ, "number");
    assert.ok(result.timing.forwardPasses > 0);
    const record: SmcRecord = JSON.parse(readFileSync(recordFile, "utf8"));
    let texts = record.steps[0].particles.map(() => "");
    for (const s of record.steps) texts = s.particles.map((p) => texts[p.parent] + p.text);
    assert.deepEqual(
      texts,
      result.particles.map((p) => p.text),
    );
    // Same seed, same run.
    const again = JSON.parse(
      run("solve", PROBLEM, "--particles", "8", "--seed", "3", "--json", "--threads", "1", "--resample", "always").stdout,
    );
    assert.deepEqual(again.particles, result.particles);
  });

  it("grade reads GSM8K-style JSONL, rewards answers and reports bad lines", () => {
    const file = join(tmp, "responses.jsonl");
    writeFileSync(
      file,
      [
        JSON.stringify({ response: "2 + 2 = 4\n#### 4", gold: "#### 4" }),
        JSON.stringify({ response: "The answer is 5.", gold: 6 }),
        "{broken",
        JSON.stringify({ response: "\\boxed{7}", gold: "7" }),
      ].join("\n"),
    );
    const r = run("grade", "--jsonl", file, "--response", "response", "--gold", "gold", "--json");
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(
      out.lines.map((l: { reward: number }) => l.reward),
      [1, 0, 1],
    );
    assert.equal(out.summary.skipped, 1);
    assert.match(out.skipped[0], /responses\.jsonl:3: not valid JSON/);
  });

  it("fails with one clear line and a distinct exit code on bad input", () => {
    const cases: [string[], number, RegExp][] = [
      [["solve"], 2, /solve needs a problem text/],
      [["solve", "x", "--particles", "zero"], 2, /--particles must be an integer from 1 to 4096/],
      [["solve", "x", "--level", "word"], 2, /--level must be one of token, step/],
      [["solve", "x", "--model", tmp], 3, /has no config\.json/],
      [["solve", "x", "--twist", join(tmp, "missing.json")], 3, /twist file .*missing\.json does not exist/],
      [["sample", "x", "--nope"], 2, /Unknown option '--nope'/],
      [["frobnicate"], 2, /unknown command "frobnicate"/],
      [["grade"], 2, /grade needs --jsonl FILE/],
    ];
    for (const [args, code, message] of cases) {
      const r = run(...args);
      assert.equal(r.status, code, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
    }
  });
});
