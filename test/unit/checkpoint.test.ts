import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openModelFolder } from "../../src/engine/lm/model/modelFolder";
import { CheckpointError, loadCheckpoint, saveCheckpoint } from "../../src/engine/train/checkpoint";
import { train } from "../../src/engine/train/trainer";
import { TokenTwistHead, ValueTwistHead } from "../../src/engine/twist/heads";
import { modelFingerprint } from "../../src/engine/twist/twistFile";
import { Rng } from "../../src/engine/util/rng";
import { MODEL_DIR, shippedModel, tinyTrainConfig } from "./helpers";

type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe("checkpoint files", () => {
  const folder = openModelFolder(MODEL_DIR);
  const dir = mkdtempSync(join(tmpdir(), "tsmc-ckpt-"));
  const path = join(dir, "checkpoint.json");
  const head = TokenTwistHead.init(folder.config.hiddenSize, folder.config.vocabSize, 4, new Rng("ckpt"));
  const params = head.parameters();
  saveCheckpoint(
    path,
    { seed: 1, loss: "ctl" },
    { epoch: 1, batch: 2, batchesDone: 7, metricsLines: 7 },
    head,
    { baseModel: { name: "tiny", fingerprint: modelFingerprint(folder) }, created: "2024-01-01T00:00:00.000Z" },
    { t: 7, m: params.map((p) => new Float64Array(p.length).fill(0.5)), v: params.map((p) => new Float64Array(p.length).fill(0.25)) },
  );
  const valid: Doc = JSON.parse(readFileSync(path, "utf8"));

  /** Loads a copy of the valid checkpoint changed by `edit`. */
  const loadEdited = (edit: (doc: Doc) => void) => {
    const doc: Doc = structuredClone(valid);
    edit(doc);
    const file = join(dir, "edited.json");
    writeFileSync(file, JSON.stringify(doc));
    return () => loadCheckpoint(file, folder);
  };
  /** The load fails with a CheckpointError in one line naming the file and matching `message`. */
  const rejects = (edit: (doc: Doc) => void, message: RegExp) =>
    assert.throws(loadEdited(edit), (e: Error) => {
      assert.ok(e instanceof CheckpointError, `${e.name}: ${e.message}`);
      assert.match(e.message, /edited\.json[: ]/);
      assert.match(e.message, message);
      assert.equal(e.message.split("\n").length, 1);
      return true;
    });

  it("round-trips a valid checkpoint", () => {
    const c = loadCheckpoint(path, folder)!;
    assert.deepEqual(c.progress, { epoch: 1, batch: 2, batchesDone: 7, metricsLines: 7 });
    assert.deepEqual(c.settings, { seed: 1, loss: "ctl" });
    assert.equal(c.adam.t, 7);
    assert.equal(c.adam.m[1][3], 0.5);
    assert.equal(c.adam.v[2][0], 0.25);
    assert.deepEqual(c.twist.head.parameters(), params);
  });

  it("has none when the file does not exist", () => assert.equal(loadCheckpoint(join(dir, "none.json"), folder), undefined));

  it("names a checkpoint that is not one", () => {
    rejects((d) => (d.format = "something-else"), /not a twisted-smc checkpoint/);
    assert.throws(() => {
      writeFileSync(join(dir, "edited.json"), "[1, 2]");
      loadCheckpoint(join(dir, "edited.json"), folder);
    }, /edited\.json: .*not a twisted-smc checkpoint/);
    rejects((d) => (d.version = 2), /version 2 is newer than this twisted-smc reads \(1\)/);
    rejects((d) => (d.version = "1"), /version must be 1, got "1"/);
  });

  for (const field of ["epoch", "batch", "batchesDone", "metricsLines"]) {
    for (const bad of [null, -1, 1.5, "3"]) {
      it(`refuses progress.${field} = ${JSON.stringify(bad)}`, () =>
        rejects(
          (d) => (d.progress[field] = bad),
          new RegExp(`progress\\.${field} must be a non-negative integer, got ${JSON.stringify(bad).replace(".", "\\.")}`),
        ));
    }
    it(`refuses a missing progress.${field}`, () => rejects((d) => delete d.progress[field], new RegExp(`progress\\.${field} is missing`)));
  }

  it("refuses a missing or malformed progress and settings", () => {
    rejects((d) => delete d.progress, /progress is missing/);
    rejects((d) => (d.progress = [0, 0, 0, 0]), /progress must be an object/);
    rejects((d) => delete d.settings, /settings is missing/);
    rejects((d) => (d.settings = "lr=0.1"), /settings must be an object, got "lr=0\.1"/);
  });

  it("refuses a missing or broken twist, naming it as the checkpoint's", () => {
    rejects((d) => delete d.twist, /twist is missing/);
    rejects((d) => (d.twist = 3), /twist must be an object, got 3/);
    rejects((d) => (d.twist.params.W = d.twist.params.W.slice(0, 40)), /twist: parameter W has/);
    rejects(
      (d) => (d.twist.baseModel.fingerprint = "0000"),
      /edited\.json was made for another model \("tiny", fingerprint 0000\), not .*: resume with that model, or choose another --output_dir/,
    );
  });

  it("refuses broken optimiser state field by field", () => {
    rejects((d) => delete d.adam, /adam is missing/);
    for (const t of [null, -1, 2.5]) rejects((d) => (d.adam.t = t), new RegExp(`adam\\.t must be a non-negative integer, got ${t}`));
    for (const k of ["m", "v"]) {
      rejects((d) => delete d.adam[k], new RegExp(`adam\\.${k} is missing`));
      rejects((d) => (d.adam[k] = "AAAA"), new RegExp(`adam\\.${k} must be an array of ${params.length} entries`));
      rejects(
        (d) => d.adam[k].pop(),
        new RegExp(`adam\\.${k} must be an array of ${params.length} entries \\(one per twist parameter\\), got ${params.length - 1}`),
      );
      rejects(
        (d) => (d.adam[k][1] = d.adam[k][1].slice(0, 16)),
        new RegExp(`adam\\.${k}\\[1\\] must be ${params[1].length} float64 values in base64, got 12 bytes`),
      );
      rejects((d) => (d.adam[k][0] = 5), new RegExp(`adam\\.${k}\\[0\\] must be ${params[0].length} float64 values in base64, got 5`));
      rejects(
        (d) => (d.adam[k][2] = Buffer.from(new Float64Array(params[2].length).fill(NaN).buffer).toString("base64")),
        new RegExp(`adam\\.${k}\\[2\\] holds a NaN or infinite value`),
      );
    }
  });
});

describe("resuming a checkpoint", function () {
  this.timeout(120000);

  it("refuses a twist of another kind than the run trains, even under matching settings", async () => {
    const model = await shippedModel();
    const dir = mkdtempSync(join(tmpdir(), "tsmc-ckpt-kind-"));
    const config = tinyTrainConfig(dir, { numExamples: 2 });
    await train(config, {}, model);
    const path = join(dir, "checkpoint.json");
    const saved = loadCheckpoint(path, model.folder)!;
    // The same settings and progress, but a step twist (value head) where a token twist belongs.
    const head = ValueTwistHead.init(model.lm.hiddenSize);
    const zeros = () => head.parameters().map((p) => new Float64Array(p.length));
    saveCheckpoint(
      path,
      saved.settings,
      saved.progress,
      head,
      { baseModel: saved.twist.meta.baseModel, created: saved.twist.meta.created },
      { t: 1, m: zeros(), v: zeros() },
    );
    await assert.rejects(
      train({ ...config, numEpochs: 2, resume: true }, {}, model),
      (e: Error) =>
        e instanceof CheckpointError &&
        new RegExp(
          `checkpoint\\.json: its twist \\(value head of .* parameters\\) is not the kind this run trains \\(token head of .* parameters\\)`,
        ).test(e.message),
    );
  });
});
