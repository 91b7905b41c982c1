import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CheckpointError, loadCheckpoint } from "../../src/engine/train/checkpoint";
import { loadProblems } from "../../src/engine/train/data";
import { calibrateVerifier } from "../../src/engine/train/calibration";
import { fitKnownAnswerFloor } from "../../src/engine/train/knownAnswerFloor";
import {
  calibrationProblems,
  FinishSamples,
  finishPlan,
  finishSamples,
  finishVerifier,
  fitPartialHead,
  PARTIAL_HEAD_FIT,
  refitVerifier,
} from "../../src/engine/train/partialResults";
import { chooseRunFinalPower, UNCHOSEN_FINAL_POWER } from "../../src/engine/train/finalPower";
import { mineResultMemory } from "../../src/engine/train/lineLabels";
import { train, TrainConfig } from "../../src/engine/train/trainer";
import { loadTwist, readTwistDocument, serializeTwist, TwistMeta } from "../../src/engine/twist/twistFile";
import { Rng } from "../../src/engine/util/rng";
import { DigitTwistHead } from "../../src/engine/twist/digitTwistHead";
import { DIGIT_TWIST_FORMAT, loadDigitTwist, loadTwistOrVerifier, parseDigitTwistDocument } from "../../src/engine/twist/digitTwistFile";
import { LineVerifier } from "../../src/engine/twist/lineVerifier";
import { ModelFolder } from "../../src/engine/lm/model/modelFolder";
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
    contrastWeight: 1,
    replay: 0,
    resume: false,
    ...over,
  };
}

/** A trained twist.json: a twist file, or the digit twist's parts. */
function trained(path: string, folder: ModelFolder): { meta: TwistMeta; head: { parameters(): Float32Array[] } } {
  const doc = readTwistDocument(path);
  if (doc.format !== DIGIT_TWIST_FORMAT) return loadTwist(path, folder);
  const { meta, verifier, partial, lengths } = parseDigitTwistDocument(doc, path, folder);
  return { meta, head: new DigitTwistHead(verifier, partial!, lengths) };
}

/**
 * The finish's verifier as its comment says it is made: the refit calibrated on the held-out samples with a
 * memory of the run's problems' results (its weights fitted there), then remembering the held-out problems'
 * results too; without a memory when its weights come out 0; its known-answer floor fitted on the held-out samples.
 * (Its final power is chosen after, by SMC with the finished twist: finalPower.ts.)
 */
function finishedByHand(refitted: LineVerifier, samples: FinishSamples): LineVerifier {
  const met = mineResultMemory([...samples.fit, ...samples.memory], 4);
  const c = calibrateVerifier(refitted, samples.calibration, met.size ? met : undefined);
  const { floor } = fitKnownAnswerFloor(c.verifier, samples.calibration);
  const finished = c.verifier.withKnownAnswerFloor(floor);
  if (![...c.hit, ...c.miss].some((x) => x !== 0)) return finished.withMemory(undefined);
  const remembered = mineResultMemory([...samples.fit, ...samples.memory, ...samples.calibration], 4);
  return finished.withMemory(remembered.withWeights(c.hit, c.miss));
}

describe("twist trainer", function () {
  this.timeout(120000);
  const tmp = mkdtempSync(join(tmpdir(), "tsmc-train-"));

  for (const [twist, loss, replay] of [
    ["token", "ctl", 0],
    ["step", "ctl", 0],
    ["step", "bce", 0],
    ["step", "prm", 0],
    ["token", "prm", 0],
    // The replay pool is part of the state: without it in the checkpoint, the resumed batch 4 would
    // replay nothing.
    ["token", "prm", 1],
  ] as const) {
    it(`${twist} twist, ${loss}${replay ? `, replay ${replay}` : ""}: a run stopped midway and resumed ends exactly where an uninterrupted run does`, async () => {
      const model = await shippedModel();
      const whole = join(tmp, `whole-${twist}-${loss}-${replay}`);
      const a = await train(config(whole, { twist, loss, replay }), {}, model);
      assert.equal(a.batches, 4);
      assert.equal(a.stopped, false);

      const parts = join(tmp, `parts-${twist}-${loss}-${replay}`);
      const ctl = new AbortController();
      const first = await train(
        config(parts, { twist, loss, replay }),
        { signal: ctl.signal, onBatch: (m) => (m.step === 3 ? ctl.abort() : undefined) },
        model,
      );
      assert.equal(first.stopped, true);
      assert.equal(first.batches, 3);
      const second = await train(config(parts, { twist, loss, replay, resume: true }), {}, model);
      assert.equal(second.batches, 4);

      const ta = trained(a.twistPath, model.folder),
        tb = trained(second.twistPath, model.folder);
      assert.deepEqual(tb.head.parameters(), ta.head.parameters());
      // The digit twist's counts are saved in its checkpoints too.
      if (ta.head instanceof DigitTwistHead) assert.deepEqual((tb.head as DigitTwistHead).lengths.toJSON(), ta.head.lengths.toJSON());
      // W (token head), w (value head) and w2 (line verifier; the digit twist's head's too) start at
      // zero: training moved them.
      const moved = loss === "prm" ? (twist === "token" ? [5, 12] : [5]) : [twist === "token" ? 1 : 0];
      for (const i of moved)
        assert.ok(
          ta.head.parameters()[i].some((x) => x !== 0),
          `training changed parameter ${i}`,
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

  it("token twist, prm: the digit twist holds the step level's verifier bit for bit, a partial-result head and result lengths", async () => {
    const model = await shippedModel();
    const step = await train(config(join(tmp, "digit-step"), { twist: "step", loss: "prm" }), {}, model);
    const token = await train(config(join(tmp, "digit-token"), { twist: "token", loss: "prm" }), {}, model);
    const verifier = loadTwist(step.twistPath, model.folder).head as LineVerifier;
    const digit = trained(token.twistPath, model.folder).head as DigitTwistHead;
    assert.ok(digit instanceof DigitTwistHead);
    assert.deepEqual(digit.verifier.parameters(), verifier.parameters());
    // Counted from the right lines of the plain samples the head was fitted on (4 problems × 8).
    const counted = Object.values(digit.lengths.toJSON().coarse)
      .flat()
      .reduce((a, b) => a + b, 0);
    assert.ok(counted > 0, "result lengths counted");
    // The file is what solve and eval read at token level (digit by digit), and the step level reads its verifier.
    const twist = loadDigitTwist(token.twistPath, model.lm.vocabSize, model.folder);
    assert.ok(twist?.partial && twist.lengths);
    assert.deepEqual(loadTwistOrVerifier(token.twistPath, model.folder).head.parameters(), verifier.parameters());
  });

  it("token twist, prm: after the epochs the verifier is refitted and the head fitted to it; stopped there, --resume fits them again exactly", async () => {
    const model = await shippedModel();
    const over = { twist: "token", loss: "prm", numExamples: 4, seed: 1, outputLength: 96 } as const;
    const heldOut: unknown[] = [];
    const whole = await train(config(join(tmp, "fit-whole"), over), { onStart: (info) => heldOut.push(info.heldOut) }, model);
    assert.deepEqual(heldOut, [{ asked: 1, found: 1 }]);
    const written = trained(whole.twistPath, model.folder).head as DigitTwistHead;
    // What the epochs left is in the checkpoint; the twist holds that verifier refitted, and the head and
    // lengths fitted to it, as fitPartialHead makes them from the run's problems.
    const epochs = loadCheckpoint(join(tmp, "fit-whole", "checkpoint.json"), model.folder)!.twist.head as DigitTwistHead;
    assert.notDeepEqual(written.verifier.parameters(), epochs.verifier.parameters());
    // The run reads 4 problems; its finish also samples the one after them (calibrationProblems(4)).
    const five = loadProblems("synthetic", "train", 5, 1).problems;
    const problems = five.slice(0, 4);
    const finish = { seed: 1, maxTokens: 96, contrastWeight: 1, heldOut: five.slice(4) };
    const fitted = await fitPartialHead(model, epochs.verifier, problems, finish);
    if (!fitted?.head) assert.fail("the samples hold lines to fit");
    assert.deepEqual(written.verifier.parameters(), fitted.verifier.parameters());
    // That verifier is the epochs' refitted on the run's problems, its base rates set on the held-out one.
    const samples = (await finishSamples(model, problems, finish))!;
    assert.deepEqual([samples.fit.length, samples.memory.length, samples.calibration.length], [4, 0, 1]);
    const calibrated = finishedByHand((await refitVerifier(epochs.verifier, samples.fit, finish))!, samples);
    assert.deepEqual(written.verifier.parameters(), calibrated.parameters());
    assert.deepEqual(written.verifier.p.memory?.toDocument(), calibrated.p.memory?.toDocument());
    assert.equal(written.verifier.p.knownAnswerFloor, calibrated.p.knownAnswerFloor);
    // Solutions end on the power that token-level SMC with the finished digit twist chose on the held-out
    // problem; the head reads results being written, no power.
    const chosen = (await chooseRunFinalPower(
      model,
      new DigitTwistHead(fitted.verifier, fitted.head.partial, fitted.head.lengths).twist(model.lm.vocabSize),
      "token",
      fitted.verifier,
      finish,
    ))!;
    assert.equal(chosen.problems, 1);
    assert.equal(written.verifier.p.finalPower ?? 1, chosen.power);
    assert.equal(written.partial.net.p.finalPower, undefined);
    assert.deepEqual(written.partial.net.parameters(), fitted.head.partial.net.parameters());
    assert.deepEqual(written.lengths.toJSON(), fitted.head.lengths.toJSON());
    assert.notDeepEqual(written.partial.net.parameters(), epochs.partial.net.parameters());
    // It started from the verifier and moved away from it.
    assert.notDeepEqual(written.partial.net.parameters(), written.verifier.parameters());

    for (const stopAt of ["sampling", "verifier", "training", "power"] as const) {
      const dir = join(tmp, `fit-stopped-${stopAt}`);
      const ctl = new AbortController();
      const parts: string[] = [];
      const first = await train(
        config(dir, over),
        {
          signal: ctl.signal,
          onFinishProgress: (p) => {
            parts.push(`${p.part} ${p.done}`);
            if (p.part === stopAt) ctl.abort();
          },
        },
        model,
      );
      assert.equal(first.stopped, true);
      assert.equal(first.batches, 4);
      assert.equal(existsSync(first.twistPath), false, "no twist is written before the head is fitted");
      const sampled = ["sampling 1", "sampling 2", "sampling 3", "sampling 4", "sampling 5"];
      const passes = Array.from({ length: PARTIAL_HEAD_FIT.epochs }, (_, i) => `training ${i + 1}`);
      assert.deepEqual(
        parts,
        {
          sampling: ["sampling 1"],
          verifier: [...sampled, "verifier 1"],
          training: [...sampled, "verifier 1", "training 1"],
          power: [...sampled, "verifier 1", ...passes, "power 1"],
        }[stopAt],
      );
      const second = await train(config(dir, { ...over, resume: true }), { onBatch: () => assert.fail("the epochs are done") }, model);
      assert.equal(second.stopped, false);
      const resumed = trained(second.twistPath, model.folder).head as DigitTwistHead;
      assert.deepEqual(resumed.parameters(), written.parameters());
      assert.deepEqual(resumed.lengths.toJSON(), written.lengths.toJSON());
      assert.equal(resumed.verifier.p.finalPower, written.verifier.p.finalPower);
    }
  });

  it("prm's finish: the verifier refitted on the run's first problems, given their results, its weights set on held-out ones after them", async () => {
    assert.deepEqual([4000, 1000, 8, 3].map(calibrationProblems), [600, 250, 2, 0]);
    // Fit on the first 1,800, remember up to 4,000, calibrate on a quarter of the run (600 at most) of those found.
    assert.deepEqual(finishPlan(4000, 600), { fit: 1800, memory: 2200, calibration: 600 });
    assert.deepEqual(finishPlan(10000, 5000), { fit: 1800, memory: 2200, calibration: 600 });
    assert.deepEqual(finishPlan(1000, 250), { fit: 1000, memory: 0, calibration: 250 });
    assert.deepEqual(finishPlan(2000, 10), { fit: 1800, memory: 200, calibration: 10 });
    const model = await shippedModel();
    const verifier = (loadTwistOrVerifier(join(model.folder.dir, "twist-step.json"), model.folder).head as LineVerifier).withMemory(
      undefined,
    );
    // Seed 8: the held-out problems' samples write 24 lines whose expressions the run's right samples computed.
    const all = loadProblems("synthetic", "train", 60, 8).problems;
    const problems = all.slice(0, 40);
    // More held-out problems than a run of 40 reads (10): the first ten after the run's are read.
    const finish = { seed: 8, maxTokens: 96, contrastWeight: 1, heldOut: all.slice(40) };
    const fitted = await fitPartialHead(model, verifier, problems, finish);
    const samples = (await finishSamples(model, problems, finish))!;
    assert.deepEqual([samples.fit.length, samples.memory.length, samples.calibration.length], [40, 0, 10]);
    const refitted = (await refitVerifier(verifier, samples.fit, finish))!;
    const met = mineResultMemory(samples.fit, 4);
    const calibrated = calibrateVerifier(refitted, samples.calibration, met);
    assert.ok(calibrated.samples > 0, "the held-out samples hold lines");
    assert.notDeepEqual(calibrated.shifts, [0, 0, 0, 0]);
    // Some held-out line computes an expression the run's right samples did: the memory is weighed and kept,
    // remembering the held-out problems' results too.
    assert.ok(
      [...calibrated.hit, ...calibrated.miss].some((x) => x !== 0),
      "the memory's weights are fitted",
    );
    const expected = finishedByHand(refitted, samples);
    assert.ok(expected.p.memory!.size > met.size);
    assert.deepEqual(expected.p.memory!.toDocument().hit, calibrated.hit);
    assert.deepEqual(fitted?.verifier.parameters(), expected.parameters());
    assert.deepEqual(fitted?.verifier.p.memory?.toDocument(), expected.p.memory?.toDocument());
    // The head starts from it and reads the same memory.
    assert.equal(fitted?.head?.partial.net.p.memory, fitted?.verifier.p.memory);
    // The step level's finish makes the same verifier.
    const step = (await finishVerifier(model, verifier, problems, finish))!;
    assert.deepEqual(step.parameters(), expected.parameters());
    assert.deepEqual(step.p.memory?.toDocument(), expected.p.memory?.toDocument());
    assert.equal(step.p.knownAnswerFloor, expected.p.knownAnswerFloor);
    // Both end solutions on φ until the run's finish chooses their power.
    assert.deepEqual([fitted?.verifier.p.finalPower, step.p.finalPower], [undefined, undefined]);
  });

  it("prm on a data file that ends with the run's problems: says none were held out, and keeps the refit's base rates", async () => {
    const model = await shippedModel();
    const file = join(tmp, "four.jsonl");
    writeFileSync(
      file,
      synthesize("train", 4, 5)
        .map((p) => JSON.stringify({ question: p.question, answer: p.answer }) + "\n")
        .join(""),
    );
    const over = { twist: "step", loss: "prm", numExamples: 4, numEpochs: 1, seed: 2, outputLength: 96, dataset: file } as const;
    const heldOut: unknown[] = [];
    const r = await train(config(join(tmp, "four"), over), { onStart: (info) => heldOut.push(info.heldOut) }, model);
    assert.deepEqual(heldOut, [{ asked: 1, found: 0 }]);
    const epochs = loadCheckpoint(join(tmp, "four", "checkpoint.json"), model.folder)!.twist.head as LineVerifier;
    const problems = loadProblems(file, "train", 4, 2).problems;
    const finish = { seed: 2, maxTokens: 96, contrastWeight: 1, heldOut: [] };
    const refitted = (await refitVerifier(epochs, (await finishSamples(model, problems, finish))!.fit, finish))!;
    const written = trained(r.twistPath, model.folder).head as LineVerifier;
    assert.deepEqual(written.parameters(), refitted.parameters());
    // Nor is there a held-out problem to choose the final power on: solutions end on φ as fitted.
    assert.equal(UNCHOSEN_FINAL_POWER, 1);
    assert.equal(written.p.finalPower, undefined);
  });

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

  it("records the contrast weight only where prm reads it: older checkpoints (without it) resume", async () => {
    const model = await shippedModel();
    const settings = (dir: string) => JSON.parse(readFileSync(join(dir, "checkpoint.json"), "utf8")).settings;
    const ctl = join(tmp, "contrast-ctl");
    await train(config(ctl, { numEpochs: 1, numExamples: 2 }), {}, model);
    assert.equal(settings(ctl).contrastWeight, undefined);
    const prm = join(tmp, "contrast-prm");
    await train(config(prm, { numEpochs: 1, numExamples: 2, twist: "step", loss: "prm", contrastWeight: 0 }), {}, model);
    assert.equal(settings(prm).contrastWeight, undefined);
    await assert.rejects(
      train(config(prm, { numEpochs: 2, numExamples: 2, twist: "step", loss: "prm", resume: true }), {}, model),
      /different contrastWeight/,
    );
    const resumed = await train(
      config(prm, { numEpochs: 2, numExamples: 2, twist: "step", loss: "prm", contrastWeight: 0, resume: true }),
      {},
      model,
    );
    assert.equal(resumed.batches, 2);
  });

  it("prm with --replay: updates also read earlier problems' samples, kept in the checkpoint; other objectives refuse it", async () => {
    const model = await shippedModel();
    const over = { twist: "step", loss: "prm", twistUpdatesPerExample: 1 } as const;
    const fresh = await train(config(join(tmp, "replay-0"), over), {}, model);
    const dir = join(tmp, "replay-2");
    const replayed = await train(config(dir, { ...over, replay: 2 }), {}, model);
    const params = (path: string) => loadTwist(path, model.folder).head.parameters();
    // The first batch has nothing to replay; the later ones read 2 batches more.
    assert.notDeepEqual(params(replayed.twistPath), params(fresh.twistPath));
    const doc = JSON.parse(readFileSync(join(dir, "checkpoint.json"), "utf8"));
    assert.equal(doc.settings.replay, 2);
    assert.equal(JSON.parse(readFileSync(join(tmp, "replay-0", "checkpoint.json"), "utf8")).settings.replay, undefined);
    // 2 epochs × 4 problems, each problem's 4 samples with their outcomes.
    assert.equal(doc.replay.length, 8);
    for (const kept of doc.replay) {
      assert.equal(kept.texts.length, 4);
      assert.equal(kept.correct.length, 4);
    }
    await assert.rejects(train(config(join(tmp, "replay-ctl"), { replay: 1 }), {}, model), /ctl objective's data depend on the twist/);
    // Replay is part of the run: resuming without it (or a run from before it, with it) is refused.
    await assert.rejects(train(config(dir, { ...over, numEpochs: 3, resume: true }), {}, model), /different replay \(2\)/);
    await assert.rejects(
      train(config(join(tmp, "replay-0"), { ...over, replay: 2, numEpochs: 3, resume: true }), {}, model),
      /different replay \(0\)/,
    );
    // A damaged pool is named field by field.
    doc.replay[3].correct = [true];
    writeFileSync(join(dir, "checkpoint.json"), JSON.stringify(doc));
    await assert.rejects(
      train(config(dir, { ...over, replay: 2, numEpochs: 3, resume: true }), {}, model),
      (e: Error) => e instanceof CheckpointError && /replay\[3\]\.correct must be an array of 4 booleans/.test(e.message),
    );
  });

  it("a run begun with a verifier that reads 2 digits from the column below (before 2026-12-06) resumes with it", async () => {
    const model = await shippedModel();
    const dir = join(tmp, "below-2");
    const over = { twist: "step", loss: "prm", numExamples: 2 } as const;
    await train(config(dir, { ...over, numEpochs: 1 }), {}, model);
    // The checkpoint as the release before wrote it: its verifier reads (a, b) below, and Adam's moments fit it.
    const path = join(dir, "checkpoint.json");
    const doc = JSON.parse(readFileSync(path, "utf8"));
    assert.equal(doc.twist.verifier.below, 3);
    const old = LineVerifier.init(4, new Rng("old"), 16, 32, 2);
    doc.twist = JSON.parse(serializeTwist(old, { baseModel: doc.twist.baseModel, created: doc.twist.created }));
    const zeros = (n: number) => Buffer.from(new Float64Array(n).buffer).toString("base64");
    doc.adam.m = old.parameters().map((p) => zeros(p.length));
    doc.adam.v = old.parameters().map((p) => zeros(p.length));
    writeFileSync(path, JSON.stringify(doc));
    const resumed = await train(config(dir, { ...over, numEpochs: 2, resume: true }), {}, model);
    assert.equal(resumed.batches, 2);
    const head = loadTwist(resumed.twistPath, model.folder).head as LineVerifier;
    assert.equal(head.p.below, undefined);
    assert.notDeepEqual(head.p.w2, old.p.w2, "the resumed batch trained it");
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
