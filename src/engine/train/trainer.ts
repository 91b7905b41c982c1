/**
 * The twist trainer (the seed's train_twist_for_math_problems): pick the objective (`--loss`, see
 * objectives/) and make its head; then for each batch of problems with known answers, have the
 * objective collect its data under the current twist, take `twistUpdatesPerExample` Adam steps on its
 * gradient, log metrics, and checkpoint atomically; after the epochs, the objective's finish (prm: the
 * verifier refitted, and the digit twist's head fitted to it), then the twist file.
 * Every random choice is seeded by (seed, epoch, batch, problem), so a resumed run repeats an
 * uninterrupted one exactly.
 */
import type { DeviceRequest } from "../../protocol/protocol";
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadModel, LoadedModel } from "../lm/model/loadModel";
import { Split } from "../math/problems";
import { SmcLevel } from "../smc/twistedSmc";
import { HeldOutProblems, TrainBatchMetrics, TrainFinishProgress } from "../../protocol/training";
import { Adam } from "../twist/adam";
import { TokenTwistHead } from "../twist/heads";
import { modelFingerprint } from "../twist/twistFile";
import { DigitTwistHead, TrainableHead } from "../twist/digitTwistHead";
import { writeFileAtomic } from "../util/atomicWrite";
import { OnnxTokenTwist, runnableTwist } from "../twist/onnxTwist";
import { hashString64, Rng } from "../util/rng";
import { Checkpoint, CheckpointError, loadCheckpoint, saveCheckpoint, serializeTrainedHead } from "./checkpoint";
import { loadProblems } from "./data";
import { objectiveFor, TWIST_LOSSES, TwistLoss } from "./objectives";
import { ProblemData, SampleOutcomes } from "./samples";
import { LineVerifier } from "../twist/lineVerifier";
import { DiskFullError } from "../util/errors";
import { lockOutputDir } from "./outputLock";
import { resolveModelArgument } from "../hub/cache";

export interface TrainConfig {
  modelName?: string;
  numExamples: number;
  numEpochs: number;
  batchSize: number;
  learningRate: number;
  outputDir: string;
  seed: number;
  split: Split;
  outputLength: number;
  numTwistSamples: number;
  twistUpdatesPerExample: number;
  saveEvery: number;
  dataset: string;
  loss: TwistLoss;
  twist: SmcLevel;
  /** Rank of the token head's factorisation. */
  rank: number;
  /** Final potential of a wrong answer while training (see CollectOptions.rewardFloor). */
  rewardFloor: number;
  /** prm: the total weight of each mined result's contrasts (CollectOptions.contrastWeight). */
  contrastWeight: number;
  /**
   * Batches of earlier problems' samples each update also reads, drawn from the last REPLAY_WINDOW
   * problems (objectives with `replay`: prm); 0: fresh samples only.
   */
  replay: number;
  resume: boolean;
  threads?: number;
  /** Where the model runs (auto: a GPU when one opens, else the CPU). */
  device?: DeviceRequest;
}

/** One batch's numbers: the protocol's, as they go to the editor in `--progress json` lines. */
export type BatchMetrics = TrainBatchMetrics;

export interface TrainHooks {
  onStart?: (info: {
    problems: number;
    batchesPerEpoch: number;
    resumedAt?: number;
    skipped: string[];
    model: string;
    data: string;
    /** Where the model runs, as its device line says it (e.g. "cpu (onnxruntime-node, 2 threads)"). */
    device: string;
    /** Problems after the run's that the objective's finish reads (prm); absent for other objectives. */
    heldOut?: HeldOutProblems;
  }) => void;
  onBatch?: (m: BatchMetrics, totalBatches: number) => void;
  onCheckpoint?: (path: string) => void;
  /** The work after the epochs (the objective's finish: prm refits its verifier, and fits the digit twist's head to it). */
  onFinishProgress?: (p: TrainFinishProgress) => void;
  signal?: AbortSignal;
}

export interface TrainResult {
  twistPath: string;
  batches: number;
  stopped: boolean;
  final?: BatchMetrics;
}

/**
 * Problems whose samples replay draws from: the latest ones (about 0.8 MB of text at 16 samples each,
 * kept in the checkpoint). Measured on dumped samples: a window of 256–1,024 problems gave the verifier
 * the same digit ranking as replay from every earlier problem; 64 gave less.
 */
export const REPLAY_WINDOW = 512;

export const CHECKPOINT_FILE = "checkpoint.json";
export const METRICS_FILE = "metrics.jsonl";
export const TWIST_FILE = "twist.json";

/**
 * Settings recorded only where they differ from these values, so that checkpoints made before they
 * existed (without them) resume; a missing one means its value here.
 */
const UNRECORDED_DEFAULTS: Record<string, unknown> = { contrastWeight: 0, replay: 0 };

/** The settings that decide the result: a resume must agree on them (epochs may grow). */
function resultSettings(c: TrainConfig, fingerprint: string): Record<string, unknown> {
  return {
    model: fingerprint,
    dataset: c.dataset,
    split: c.split,
    numExamples: c.numExamples,
    batchSize: c.batchSize,
    learningRate: c.learningRate,
    seed: c.seed,
    outputLength: c.outputLength,
    numTwistSamples: c.numTwistSamples,
    twistUpdatesPerExample: c.twistUpdatesPerExample,
    loss: c.loss,
    twist: c.twist,
    rank: c.rank,
    rewardFloor: c.rewardFloor,
    // Only prm reads it; a prm run from before contrasts existed had none and resumes with
    // --contrast_weight 0 (a checkpoint without the setting means 0).
    ...(c.loss === "prm" && c.contrastWeight !== 0 && { contrastWeight: c.contrastWeight }),
    // Recorded only when used, so that runs from before replay existed resume.
    ...(c.replay !== 0 && { replay: c.replay }),
  };
}

export function validateTrainConfig(c: TrainConfig): void {
  const positive: [string, number][] = [
    ["num_examples", c.numExamples],
    ["num_epochs", c.numEpochs],
    ["batch_size", c.batchSize],
    ["output_length", c.outputLength],
    ["num_twist_samples", c.numTwistSamples],
    ["twist_updates_per_example", c.twistUpdatesPerExample],
    ["save_every", c.saveEvery],
    ["rank", c.rank],
  ];
  for (const [name, v] of positive)
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`--${name} must be a positive integer, got ${v}`);
  if (!(c.rewardFloor >= 0 && c.rewardFloor < 1)) throw new RangeError(`--reward_floor must be in [0, 1), got ${c.rewardFloor}`);
  if (!(c.contrastWeight >= 0 && Number.isFinite(c.contrastWeight)))
    throw new RangeError(`--contrast_weight must be a number ≥ 0, got ${c.contrastWeight}`);
  if (!(c.learningRate > 0)) throw new RangeError(`--learning_rate must be > 0, got ${c.learningRate}`);
  if (!(Number.isInteger(c.replay) && c.replay >= 0)) throw new RangeError(`--replay must be an integer ≥ 0, got ${c.replay}`);
  if (!TWIST_LOSSES.includes(c.loss)) throw new RangeError(`--loss must be one of ${TWIST_LOSSES.join(", ")}, got ${c.loss}`);
  const { levels, replay } = objectiveFor(c.loss);
  if (!levels.includes(c.twist)) throw new RangeError(`--loss ${c.loss} trains a ${levels.join(" or ")} twist: add --twist ${levels[0]}`);
  if (c.replay > 0 && !replay)
    throw new RangeError(
      `--replay: the ${c.loss} objective's data depend on the twist being trained, so earlier samples cannot be replayed (only prm's can)`,
    );
}

export async function train(config: TrainConfig, hooks: TrainHooks = {}, preloaded?: LoadedModel): Promise<TrainResult> {
  validateTrainConfig(config);
  // A Hub id not downloaded yet is refused before the output folder is made.
  const modelDir = config.modelName === undefined ? undefined : resolveModelArgument(config.modelName);
  // Before any model is loaded: the lock proves the folder can be made and written, and keeps a
  // second run out of it.
  const unlock = lockOutputDir(config.outputDir);
  try {
    const model = preloaded ?? (await loadModel(modelDir, { threads: config.threads, device: config.device ?? "auto" }));
    try {
      return await trainWith(model, config, hooks);
    } finally {
      if (!preloaded) await model.lm.dispose();
    }
  } finally {
    unlock();
  }
}

async function trainWith(model: LoadedModel, c: TrainConfig, hooks: TrainHooks): Promise<TrainResult> {
  const { folder, lm } = model;
  const fingerprint = modelFingerprint(folder);
  const settings = resultSettings(c, fingerprint);
  const objective = objectiveFor(c.loss);
  // The run reads the first numExamples problems; the finish may also read some after them.
  const asked = objective.heldOut?.(c.numExamples);
  const loaded = loadProblems(c.dataset, c.split, c.numExamples + (asked ?? 0), c.seed);
  const { skipped, description } = loaded;
  const problems = loaded.problems.slice(0, c.numExamples);
  const heldOut = loaded.problems.slice(c.numExamples);
  const checkpointPath = join(c.outputDir, CHECKPOINT_FILE);
  const metricsPath = join(c.outputDir, METRICS_FILE);

  const checkpoint: Checkpoint | undefined = c.resume ? loadCheckpoint(checkpointPath, folder) : undefined;
  let head: TrainableHead = objective.initHead({
    level: c.twist,
    hiddenSize: lm.hiddenSize,
    vocabSize: lm.vocabSize,
    rank: c.rank,
    seed: c.seed,
    // A run keeps the verifier it started with (those before 2026-12-06 read 2 digits below).
    verifierBelow: checkpoint && verifierBelowOf(checkpoint.twist.head),
  });
  if (c.resume) {
    if (checkpoint) {
      const saved = (k: string) => checkpoint.settings[k] ?? UNRECORDED_DEFAULTS[k];
      const differing = [...new Set([...Object.keys(settings), ...Object.keys(UNRECORDED_DEFAULTS)])].filter(
        (k) => JSON.stringify(settings[k] ?? UNRECORDED_DEFAULTS[k]) !== JSON.stringify(saved(k)),
      );
      if (differing.length)
        throw new CheckpointError(
          `cannot resume ${checkpointPath}: it was made with different ${differing.map((k) => `${k} (${JSON.stringify(saved(k))})`).join(", ")}`,
        );
      if (shapeOf(checkpoint.twist.head) !== shapeOf(head))
        throw new CheckpointError(
          `${checkpointPath}: its twist (${shapeOf(checkpoint.twist.head)}) is not the kind this run trains (${shapeOf(head)}); the checkpoint is damaged: delete it to start over`,
        );
      head = checkpoint.twist.head;
    }
  } else if (existsSync(checkpointPath)) {
    throw new CheckpointError(`${c.outputDir} already holds a training run: pass --resume to continue it, or choose another --output_dir`);
  }
  const adam = new Adam(head.parameters(), c.learningRate, 0.9, 0.999, 1e-8, checkpoint?.adam);
  // The latest problems' samples, oldest first, for --replay (kept in the checkpoint).
  const replayPool: SampleOutcomes[] = c.replay > 0 ? (checkpoint?.replay ?? []) : [];
  const perEpoch = Math.ceil(problems.length / c.batchSize);
  const total = perEpoch * c.numEpochs;
  let { epoch, batch, batchesDone, metricsLines } = checkpoint?.progress ?? { epoch: 0, batch: 0, batchesDone: 0, metricsLines: 0 };
  // Metrics logged after the checkpoint belong to work that will be redone.
  if (existsSync(metricsPath) || !c.resume) {
    const kept = c.resume ? readFileSync(metricsPath, "utf8").split("\n").filter(Boolean).slice(0, metricsLines) : [];
    writeMetrics(metricsPath, kept.map((l) => l + "\n").join(""), writeFileSync);
  }
  hooks.onStart?.({
    problems: problems.length,
    batchesPerEpoch: perEpoch,
    resumedAt: checkpoint ? batchesDone : undefined,
    skipped,
    model: folder.dir,
    data: description,
    device: model.lm.device,
    ...(asked !== undefined && { heldOut: { asked, found: heldOut.length } }),
  });

  const meta = (metrics?: BatchMetrics) => ({
    baseModel: { name: folder.name, fingerprint },
    created: new Date().toISOString(),
    training: {
      ...settings,
      model: folder.name,
      data: description,
      numEpochs: c.numEpochs,
      saveEvery: c.saveEvery,
      objective: objective.description,
    },
    metrics: metrics ? { ...metrics } : undefined,
  });
  /** Saves the state before batch `nextBatch` of epoch `nextEpoch`. */
  const save = (nextEpoch: number, nextBatch: number, metrics?: BatchMetrics) => {
    saveCheckpoint(
      checkpointPath,
      settings,
      { epoch: nextEpoch, batch: nextBatch, batchesDone, metricsLines },
      head,
      meta(metrics),
      adam.state,
      c.replay > 0 ? replayPool : undefined,
    );
    hooks.onCheckpoint?.(checkpointPath);
  };

  /** The earlier problems' data this batch's updates also read: `replay` batches drawn from the pool. */
  const replayed = (epoch: number, batch: number): ProblemData<object>[] => {
    if (!c.replay || !replayPool.length) return [];
    const rng = new Rng(`replay:${c.seed}:${epoch}:${batch}`);
    return Array.from({ length: c.replay * c.batchSize }, () =>
      objective.replay!.restore(replayPool[rng.int(0, replayPool.length - 1)], { level: c.twist, contrastWeight: c.contrastWeight }),
    );
  };

  let last: BatchMetrics | undefined;
  let stopped = false;
  const start = performance.now();
  outer: for (; epoch < c.numEpochs; epoch++, batch = 0) {
    const order = shuffled(problems.length, new Rng(`order:${c.seed}:${epoch}`));
    for (; batch < perEpoch; batch++) {
      if (hooks.signal?.aborted) {
        stopped = true;
        break outer;
      }
      const idx = order.slice(batch * c.batchSize, (batch + 1) * c.batchSize);
      const data: ProblemData<object>[] = [];
      // The current head, run by onnxruntime for the SMC sweeps (gradients stay in JavaScript).
      const runner = head instanceof DigitTwistHead ? head.twist(lm.vocabSize) : await runnableTwist(head);
      try {
        for (const i of idx) {
          const seed = Number(hashString64(`sample:${c.seed}:${epoch}:${i}`) % 2147483647n);
          data.push(
            await objective.collect(model, problems[i], {
              level: c.twist,
              samples: c.numTwistSamples,
              maxTokens: c.outputLength,
              seed,
              twist: runner,
              rewardFloor: c.rewardFloor,
              contrastWeight: c.contrastWeight,
            }),
          );
        }
      } finally {
        if (runner instanceof OnnxTokenTwist) await runner.dispose();
      }
      const updateData = [...data, ...replayed(epoch, batch)];
      if (c.replay > 0) {
        replayPool.push(...data.map((d) => objective.replay!.keep(d)));
        replayPool.splice(0, Math.max(0, replayPool.length - REPLAY_WINDOW));
      }
      let loss = 0;
      for (let u = 0; u < c.twistUpdatesPerExample; u++) {
        const r = objective.gradient(head, updateData);
        if (u === 0) loss = r.loss;
        adam.step(r.grads);
      }
      objective.count?.(head, data);
      const mean = (f: (d: ProblemData<object>) => number) => data.reduce((a, d) => a + f(d), 0) / data.length;
      last = {
        epoch,
        batch,
        step: batchesDone + 1,
        loss,
        reward: mean((d) => d.stats.reward),
        sampleAccuracy: mean((d) => d.stats.sampleAccuracy),
        ess: mean((d) => d.stats.ess),
        logZ: mean((d) => (Number.isFinite(d.stats.logZ) ? d.stats.logZ : -50)),
        exactPositives: mean((d) => d.stats.exactPositives),
        seconds: Math.round((performance.now() - start) / 100) / 10,
      };
      writeMetrics(metricsPath, JSON.stringify(last) + "\n", appendFileSync);
      batchesDone++;
      metricsLines++;
      hooks.onBatch?.(last, total);
      if (batchesDone % c.saveEvery === 0) {
        if (batch + 1 < perEpoch) save(epoch, batch + 1, last);
        else save(epoch + 1, 0, last);
      }
    }
  }
  // The checkpoint holds the head as the epochs left it: a resumed run (with more epochs, or stopped
  // during the finish) goes on from there and repeats the finish.
  save(epoch, batch, last);
  const twistPath = join(c.outputDir, TWIST_FILE);
  if (!stopped && objective.finish) {
    const begun = performance.now();
    const finished = await objective.finish(model, head, problems, {
      seed: c.seed,
      maxTokens: c.outputLength,
      contrastWeight: c.contrastWeight,
      heldOut,
      signal: hooks.signal,
      onProgress: (p) => hooks.onFinishProgress?.({ ...p, seconds: Math.round((performance.now() - begun) / 100) / 10 }),
    });
    if (finished) head = finished;
    else stopped = true;
  }
  if (!stopped) writeFileAtomic(twistPath, serializeTrainedHead(head, meta(last)) + "\n");
  return { twistPath, batches: batchesDone, stopped, final: last };
}

/** Digits a head's line verifier reads from the column below; undefined for heads without one. */
function verifierBelowOf(head: TrainableHead): 2 | 3 | undefined {
  const verifier = head instanceof DigitTwistHead ? head.verifier : head instanceof LineVerifier ? head : undefined;
  return verifier && (verifier.p.below ?? 2);
}

/** The head's kind and parameter sizes: a resumed head must be the one this run would make. */
const shapeOf = (head: TrainableHead) => {
  const kind =
    head instanceof TokenTwistHead
      ? "token head"
      : head instanceof LineVerifier
        ? "line verifier"
        : head instanceof DigitTwistHead
          ? "digit twist"
          : "value head";
  return `${kind} of ${head
    .parameters()
    .map((p) => p.length)
    .join("+")} parameters`;
};

/** Writes metrics lines; a full disk says so in one line (the checkpoint before them is kept). */
function writeMetrics(path: string, text: string, write: (path: string, text: string) => void): void {
  try {
    write(path, text);
  } catch (e) {
    throw DiskFullError.from(e, path, "the last checkpoint is kept: run again with --resume");
  }
}

function shuffled(n: number, rng: Rng): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
