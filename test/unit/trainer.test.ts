import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CheckpointError } from "../../src/engine/train/checkpoint";
import { train, TrainConfig } from "../../src/engine/train/trainer";
import { loadTwist } from "../../src/engine/twist/twistFile";
import { synthesize } from "../../src/engine/math/problems";
import { shippedModel } from "./helpers";

function config(outputDir: string, over: Partial<TrainConfig> = {}): TrainConfig {
  return {
    numExamples: 4,
    numEpochs: 2,
    batchSize: 2,
    learningRate: 0.05,
    outputDir,
    seed: 1,
    split: "train",
    outputLength: 40,
    numTwistSamples: 4,
    twistUpdatesPerExample: 2,
    saveEvery: 1,
    dataset: "synthetic",
    loss: "ctl",
    twist: "token",
    rank: 8,
    rewardFloor: 0.001,
    resume: false,
    ...over,
  };
}

describe("twist trainer", function () {
  this.timeout(120000);
  const tmp = mkdtempSync(join(tmpdir(), "tsmc-train-"));

  for (const [twist, loss] of [
    ["token", "ctl"],
    ["step", "ctl"],
    ["step", "bce"],
    ["step", "prm"],
  ] as const) {
    it(`${twist} twist, ${loss}: a run stopped midway and resumed ends exactly where an uninterrupted run does`, async () => {
      const model = await shippedModel();
      const whole = join(tmp, `whole-${twist}-${loss}`);
      const a = await train(config(whole, { twist, loss }), {}, model);
      assert.equal(a.batches, 4);
      assert.equal(a.stopped, false);

      const parts = join(tmp, `parts-${twist}-${loss}`);
      const ctl = new AbortController();
      const first = await train(
        config(parts, { twist, loss }),
        { signal: ctl.signal, onBatch: (m) => (m.step === 3 ? ctl.abort() : undefined) },
        model,
      );
      assert.equal(first.stopped, true);
      assert.equal(first.batches, 3);
      const second = await train(config(parts, { twist, loss, resume: true }), {}, model);
      assert.equal(second.batches, 4);

      const ta = loadTwist(a.twistPath, model.folder),
        tb = loadTwist(second.twistPath, model.folder);
      assert.deepEqual(tb.head.parameters(), ta.head.parameters());
      // W (token head), w (value head) and w2 (line verifier) start at zero: training moved them.
      assert.ok(
        ta.head.parameters()[twist === "token" ? 1 : loss === "prm" ? 5 : 0].some((x) => x !== 0),
        "training changed the head",
      );
      const metrics = (dir: string) =>
        readFileSync(join(dir, "metrics.jsonl"), "utf8")
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l));
      const strip = (rows: Record<string, unknown>[]) => rows.map(({ seconds: _s, ...rest }) => rest);
      assert.deepEqual(strip(metrics(parts)), strip(metrics(whole)));
      assert.equal(ta.meta.training?.loss, loss);
    });
  }

  it("refuses to overwrite a run without --resume, and to resume with other settings", async () => {
    const model = await shippedModel();
    const dir = join(tmp, "guard");
    await train(config(dir, { numEpochs: 1, numExamples: 2 }), {}, model);
    await assert.rejects(
      train(config(dir, { numEpochs: 1, numExamples: 2 }), {}, model),
      (e: Error) => e instanceof CheckpointError && /pass --resume/.test(e.message),
    );
    await assert.rejects(
      train(config(dir, { numEpochs: 1, numExamples: 2, learningRate: 0.1, resume: true }), {}, model),
      /different learningRate \(0\.05\)/,
    );
  });

  it("reports a corrupt checkpoint clearly", async () => {
    const model = await shippedModel();
    const dir = join(tmp, "corrupt");
    await train(config(dir, { numEpochs: 1, numExamples: 2 }), {}, model);
    const path = join(dir, "checkpoint.json");
    writeFileSync(path, readFileSync(path, "utf8").slice(0, 100));
    await assert.rejects(
      train(config(dir, { numEpochs: 1, numExamples: 2, resume: true }), {}, model),
      /checkpoint .* is not valid JSON .*corrupt/,
    );
  });

  it("skips malformed data lines, naming file and line", async () => {
    const model = await shippedModel();
    const file = join(tmp, "data.jsonl");
    const ps = synthesize("train", 2, 9);
    writeFileSync(
      file,
      [
        JSON.stringify({ question: ps[0].question, answer: ps[0].answer }),
        "{oops",
        JSON.stringify({ question: "no answer" }),
        JSON.stringify({ question: ps[1].question, answer: ps[1].answer }),
      ].join("\n"),
    );
    let skipped: string[] = [];
    const r = await train(config(join(tmp, "file"), { dataset: file, numEpochs: 1 }), { onStart: (i) => (skipped = i.skipped) }, model);
    assert.equal(r.batches, 1);
    assert.equal(skipped.length, 2);
    assert.match(skipped[0], /data\.jsonl:2: not valid JSON/);
    assert.match(skipped[1], /data\.jsonl:3: .*"answer"/);
  });
});
