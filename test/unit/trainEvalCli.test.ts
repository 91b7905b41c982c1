import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const CLI = join(__dirname, "../../dist/cli.js");
const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 120000 });
const SMALL = [
  "--twist",
  "token",
  "--num_examples",
  "4",
  "--batch_size",
  "2",
  "--num_twist_samples",
  "3",
  "--output_length",
  "32",
  "--threads",
  "1",
];

describe("train and eval from the command line", function () {
  this.timeout(120000);
  const tmp = mkdtempSync(join(tmpdir(), "tsmc-te-"));

  it("train --progress json emits start, batch, checkpoint, finish and end lines and writes the twist", () => {
    const out = join(tmp, "json");
    const r = run("train", ...SMALL, "--num_epochs", "1", "--save_every", "1", "--output-dir", out, "--progress", "json");
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    // A digit twist: after the epoch, the head's fit (sampling, then its passes), then the end.
    const fit = lines.filter((l) => l.type === "finish").length;
    assert.ok(fit >= 1);
    assert.deepEqual(
      lines.map((l) => l.type),
      ["start", "batch", "checkpoint", "batch", "checkpoint", "checkpoint", ...Array(fit).fill("finish"), "end"],
    );
    assert.equal(lines[6].part, "sampling");
    assert.equal(lines[1].total, 2);
    for (const key of ["loss", "reward", "ess", "logZ", "seconds"]) assert.equal(typeof lines[1][key], "number");
    assert.ok(existsSync(join(out, "twist.json")));
    assert.equal(readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").length, 2);
  });

  it("stops cleanly on SIGTERM, keeps a checkpoint, and --resume finishes the run", async () => {
    const out = join(tmp, "term");
    // Enough batches that the signal lands while training is still under way.
    const LONG = [
      "--twist",
      "token",
      "--num_examples",
      "30",
      "--batch_size",
      "2",
      "--num_twist_samples",
      "3",
      "--output_length",
      "32",
      "--threads",
      "1",
      "--num_epochs",
      "1",
    ];
    const child = spawn(process.execPath, [CLI, "train", ...LONG, "--save_every", "1", "--output_dir", out, "--progress", "json"]);
    let stdout = "";
    let sent = false;
    child.stdout.on("data", (d) => {
      stdout += d;
      if (!sent && stdout.includes('"type":"batch"')) {
        sent = true;
        child.kill("SIGTERM");
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 130);
    assert.ok(existsSync(join(out, "checkpoint.json")));
    assert.ok(!existsSync(join(out, "twist.json")), "an unfinished run writes no final twist");
    const again = run("train", ...LONG, "--save_every", "1", "--output_dir", out, "--resume");
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /resuming after batch \d/);
    assert.equal(readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").length, 15);
  });

  it("train refuses bad flags with one clear line", () => {
    const r = run("train", "--twist", "token", "--loss", "bce");
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--loss bce trains a step twist: add --twist step/);
    for (const [args, message] of [
      [["--replay=-1"], /--replay must be an integer >= 0, got "-1"/],
      [
        ["--loss", "ctl", "--replay", "2"],
        /--replay needs samples that do not depend on the twist being trained: only --loss prm has them/,
      ],
    ] as const) {
      const bad = run("train", ...args);
      assert.equal(bad.status, 2, bad.stderr);
      assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
      assert.match(bad.stderr, message);
    }
  });

  it("eval --json prints every row at the same budget, consistent with pass@N", () => {
    const twist = join(tmp, "json", "twist.json");
    const r = run("eval", "--n", "4", "--particles", "4", "--json", "--token-twist", twist, "--step-twist", "none", "--threads", "1");
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.n, 4);
    const acc = Object.fromEntries(report.rows.map((row: { method: string; accuracy: number }) => [row.method, row.accuracy]));
    for (const a of Object.values(acc) as number[]) assert.ok(a >= 0 && a <= 1);
    assert.ok(acc["oracle pass@4"] >= acc["majority vote@4"]);
    assert.ok(acc["oracle pass@4"] >= acc["single sample"]);
    assert.equal(report.twists.token, twist);
    assert.deepEqual(
      report.bounds.levels.map((l: { level: string }) => l.level),
      ["token"],
    );
    assert.equal(report.bounds.tokenMinusStep, undefined);
  });

  it("eval uses the shipped twists by default: the line verifier (best-of-N, step level) and the digit twist (token level), with the log-Z bounds of both", () => {
    const r = run("eval", "--n", "3", "--particles", "4", "--json", "--threads", "1");
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.match(report.twists.step, /twist-step\.json$/);
    assert.match(report.twists.token, /twist-token\.json$/);
    const rows = Object.fromEntries(report.rows.map((row: { method: string }) => [row.method.split(" (")[0], row]));
    for (const m of [
      "best-of-4 by the step twist's final value",
      "twisted SMC, step level",
      "weighted vote over step-level twisted-SMC particles",
      "twisted SMC, token level",
      "weighted vote over token-level twisted-SMC particles",
    ]) {
      assert.ok(rows[m] && rows[m].note === undefined && rows[m].accuracy >= 0 && rows[m].accuracy <= 1, m);
    }
    // The bounds at both levels, over the same problems.
    assert.deepEqual(
      report.bounds.levels.map((l: { level: string }) => l.level),
      ["token", "step"],
    );
    assert.ok(report.bounds.problems <= report.bounds.withSample && report.bounds.withSample <= 3);
    for (const l of report.bounds.levels) assert.ok(l.zeros >= 0 && l.zeros <= report.bounds.withSample, JSON.stringify(l));
    assert.ok(report.bounds.tokenMinusStep, "both levels: their per-problem difference");
    assert.match(report.bounds.note, /with the token- and step-level twists/);
  });
});
