import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  finishProgressShown,
  finishProgressText,
  heldOutLine,
  parseTrainProgressLine,
  TrainFinishProgress,
  TrainProgressLine,
} from "../../src/protocol/training";

const CLI = join(__dirname, "../../dist/cli.js");

describe("training's progress lines (the one training wire: CLI → editor)", function () {
  this.timeout(120000);

  it("are every one a typed line the editor accepts, in order start, batch/checkpoint…, end", () => {
    const out = join(mkdtempSync(join(tmpdir(), "tsmc-progress-")), "run");
    const r = spawnSync(
      process.execPath,
      [
        CLI,
        "train",
        "--num_examples",
        "2",
        "--batch_size",
        "1",
        "--num_epochs",
        "1",
        "--num_twist_samples",
        "2",
        "--output_length",
        "24",
        "--save_every",
        "1",
        "--output_dir",
        out,
        "--progress",
        "json",
      ],
      { encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => parseTrainProgressLine(l));
    assert.ok(
      lines.every((l): l is TrainProgressLine => l !== undefined),
      r.stdout,
    );
    assert.deepEqual(
      lines.map((l) => l!.type),
      // After the epochs the verifier's refit samples the problems (24 tokens hold no line to refit on).
      ["start", "batch", "checkpoint", "batch", "checkpoint", "checkpoint", "finish", "end"],
    );
    const end = lines[lines.length - 1] as Extract<TrainProgressLine, { type: "end" }>;
    assert.equal(end.batches, 2);
    assert.equal(end.stopped, false);
  });

  it("at token level, report the work after the epochs: sampling, the verifier's refit, then the head's passes, with their loss", () => {
    const out = join(mkdtempSync(join(tmpdir(), "tsmc-progress-")), "run");
    const flags = { num_examples: 2, batch_size: 1, num_epochs: 1, num_twist_samples: 2, output_length: 96, save_every: 2, seed: 1 };
    const args = Object.entries(flags).flatMap(([k, v]) => [`--${k}`, String(v)]);
    const r = spawnSync(process.execPath, [CLI, "train", "--twist", "token", ...args, "--output_dir", out, "--progress", "json"], {
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => parseTrainProgressLine(l)!);
    assert.deepEqual(
      lines.map((l) => l.type),
      ["start", "batch", "batch", "checkpoint", "checkpoint", ...Array(8).fill("finish"), "end"],
      r.stdout,
    );
    // A run of 2 problems holds none out for the verifier's base rates, and says so.
    assert.deepEqual((lines[0] as Extract<TrainProgressLine, { type: "start" }>).heldOut, { asked: 0, found: 0 });
    const finish = lines.filter((l): l is Extract<TrainProgressLine, { type: "finish" }> => l.type === "finish");
    assert.deepEqual(
      finish.map((f) => [f.part, f.done, f.total]),
      [["sampling", 2, 2], ["verifier", 1, 1], ...[1, 2, 3, 4, 5, 6].map((d) => ["training", d, 6])],
    );
    assert.ok(finish.slice(1).every((f) => f.loss! > 0 && f.loss! < 1));
    assert.deepEqual(
      finish.map((f) => f.seconds),
      [...finish.map((f) => f.seconds)].sort((a, b) => a - b),
    );
  });

  it("are refused when a field is missing or of the wrong type, or the line is not JSON", () => {
    const batch = {
      type: "batch",
      total: 2,
      epoch: 0,
      batch: 0,
      step: 1,
      loss: 0.5,
      reward: 1,
      sampleAccuracy: 1,
      ess: 1,
      logZ: -1,
      exactPositives: 1,
      seconds: 0.1,
    };
    assert.ok(parseTrainProgressLine(JSON.stringify(batch)));
    assert.equal(parseTrainProgressLine(JSON.stringify({ ...batch, loss: "0.5" })), undefined);
    assert.equal(parseTrainProgressLine(JSON.stringify({ ...batch, ess: undefined })), undefined);
    assert.equal(parseTrainProgressLine(JSON.stringify({ type: "end", batches: 2, stopped: "no", twistPath: "t" })), undefined);
    assert.equal(parseTrainProgressLine(JSON.stringify({ type: "unknown" })), undefined);
    const finish = { type: "finish", part: "training", done: 1, total: 6, loss: 0.3, seconds: 2 };
    assert.ok(parseTrainProgressLine(JSON.stringify(finish)));
    assert.ok(parseTrainProgressLine(JSON.stringify({ ...finish, part: "sampling", loss: undefined })));
    assert.ok(parseTrainProgressLine(JSON.stringify({ ...finish, part: "verifier", total: 1 })));
    assert.ok(parseTrainProgressLine(JSON.stringify({ ...finish, part: "power", loss: undefined, power: 1.5 })));
    assert.equal(parseTrainProgressLine(JSON.stringify({ ...finish, part: "power", power: "2" })), undefined);
    assert.equal(parseTrainProgressLine(JSON.stringify({ ...finish, part: "other" })), undefined);
    assert.equal(parseTrainProgressLine(JSON.stringify({ ...finish, part: "toString" })), undefined);
    assert.equal(parseTrainProgressLine(JSON.stringify({ ...finish, loss: "0.3" })), undefined);
    assert.equal(parseTrainProgressLine(JSON.stringify({ ...finish, done: undefined })), undefined);
    const start = { type: "start", problems: 4, batchesPerEpoch: 2, skipped: [], model: "m", data: "d" };
    assert.ok(parseTrainProgressLine(JSON.stringify(start)));
    assert.ok(parseTrainProgressLine(JSON.stringify({ ...start, heldOut: { asked: 1, found: 1 } })));
    assert.equal(parseTrainProgressLine(JSON.stringify({ ...start, heldOut: { asked: "1", found: 1 } })), undefined);
    assert.equal(parseTrainProgressLine(JSON.stringify({ ...start, heldOut: 1 })), undefined);
    assert.equal(parseTrainProgressLine("{ not json"), undefined);
    assert.equal(parseTrainProgressLine("Training a step-level twist"), undefined);
    assert.equal(parseTrainProgressLine("null"), undefined);
  });

  it("say each part of the finish in words, the problem-by-problem parts every 100 problems and at their end", () => {
    assert.equal(finishProgressText({ part: "power", done: 40, total: 300, seconds: 5 }), "SMC on 40/300 held-out problems 5s");
    assert.equal(
      finishProgressText({ part: "power", done: 300, total: 300, power: 1.5, seconds: 9 }),
      "solutions end on φ^1.5 when the answer is unknown (chosen on 300 held-out problems) 9s",
    );
    assert.equal(finishProgressText({ part: "training", done: 1, total: 6, loss: 0.3, seconds: 2 }), "pass 1/6 loss 0.3000 2s");
    assert.equal(finishProgressText({ part: "sampling", done: 100, total: 500, seconds: 3 }), "sampled 100/500 problems 3s");
    const shown = (part: TrainFinishProgress["part"], done: number, total: number, power?: number) =>
      finishProgressShown({ part, done, total, power, seconds: 0 });
    assert.deepEqual([shown("sampling", 99, 500), shown("sampling", 100, 500), shown("sampling", 500, 500)], [false, true, true]);
    // The power's last problem is said by the line that names the power chosen.
    assert.deepEqual(
      [shown("power", 99, 300), shown("power", 100, 300), shown("power", 300, 300), shown("power", 300, 300, 2), shown("power", 7, 7, 1)],
      [false, true, false, true, true],
    );
    assert.equal(shown("verifier", 1, 1), true);
  });

  it("say in words how many problems were held out for the verifier's base rates and final power, and when the data ran out", () => {
    assert.match(
      heldOutLine({ asked: 600, found: 600 }),
      /^held out: 600 problems after these, for the verifier's base rates, memory weights and final power$/,
    );
    assert.match(heldOutLine({ asked: 600, found: 250 }), /250 of 600 .*the data end.*set on fewer/);
    assert.match(
      heldOutLine({ asked: 600, found: 0 }),
      /none of 600 .*keeps its refit's base rates and reads no memory.*end on φ as fitted/,
    );
    assert.match(heldOutLine({ asked: 0, found: 0 }), /none \(a run this small holds none out\)/);
  });
});
