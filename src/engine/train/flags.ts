/** The trainer's flags by the seed's names, their defaults, and their reading into a TrainConfig. */
import {
  choiceOption,
  intOption,
  MAX_PARTICLES,
  numberOption,
  OptionValues,
  stringOption,
  threadsOption,
  UsageError,
} from "../util/options";
import { TrainConfig } from "./trainer";
import { DEVICES } from "../../protocol/protocol";
import { OBJECTIVES, objectiveFor, TWIST_LOSSES, TwistLoss } from "./objectives";

/**
 * Defaults that train the shipped twists: `--twist token` the digit twist (a line verifier, a
 * partial-result head and result lengths; the model's twist-token.json, its verifier twist-step.json) on
 * 4,000 synthetic problems, three times over with fresh samples (1,500 updates, each also reading 3
 * batches replayed from the latest 512 problems), 30 minutes on 2 cores; `--twist step` the same verifier
 * alone. The verifier kept improving up to the last batches (subtraction AUC 0.91 after 1,000 updates,
 * 0.98 after 1,500, before replay).
 */
export const TRAIN_DEFAULTS = {
  num_examples: 4000,
  num_epochs: 3,
  batch_size: 8,
  output_dir: "math_twist_model",
  seed: 42,
  split: "train",
  output_length: 96,
  num_twist_samples: 16,
  twist_updates_per_example: 1,
  save_every: 10,
  dataset: "synthetic",
  twist: "step",
  rank: 32,
  reward_floor: 0.001,
  contrast_weight: 1,
  /** prm's; the other objectives' data depend on the twist, and they replay nothing. */
  replay: 3,
} as const;

/**
 * The loss when none is given: the line verifier, read digit by digit at token level (CTL's token head
 * scored as plain sampling on held-out problems, docs/token-twist.md).
 */
export const DEFAULT_LOSS = { token: "prm", step: "prm" } as const;

/** Adam step sizes, each objective's own: the value head's few parameters take a larger step than the token head's many. */
export const DEFAULT_LEARNING_RATE = Object.fromEntries(TWIST_LOSSES.map((l) => [l, OBJECTIVES[l].learningRate])) as Record<
  TwistLoss,
  number
>;

/**
 * Every key trainConfigFromFlags takes: the trainer's flags, and the CLI's own (--progress, --help),
 * which it passes along with the rest.
 */
export const TRAIN_FLAGS: readonly string[] = [
  ...Object.keys(TRAIN_DEFAULTS),
  "model_name",
  "learning_rate",
  "loss",
  "resume",
  "threads",
  "dtype",
  "onnx_file",
  "device",
  "progress",
  "help",
];

/**
 * A TrainConfig from flags by the seed's names (strings as typed, or values); shared with the engine
 * server. An unknown key is refused, as the CLI refuses an unknown flag: a misspelt one would
 * otherwise train for an hour with its default.
 */
export function trainConfigFromFlags(values: OptionValues): TrainConfig {
  const D = TRAIN_DEFAULTS;
  const unknown = Object.keys(values).find((k) => !TRAIN_FLAGS.includes(k));
  if (unknown !== undefined)
    throw new UsageError(`unknown train flag "${unknown}"; the flags are ${TRAIN_FLAGS.filter((f) => f !== "help").join(", ")}`);
  const twist = choiceOption(values, "twist", ["token", "step"] as const, D.twist);
  const loss = choiceOption(values, "loss", TWIST_LOSSES, DEFAULT_LOSS[twist]);
  const config: TrainConfig = {
    modelName: stringOption(values, "model_name"),
    numExamples: intOption(values, "num_examples", D.num_examples, 1),
    numEpochs: intOption(values, "num_epochs", D.num_epochs, 1),
    batchSize: intOption(values, "batch_size", D.batch_size, 1),
    learningRate: numberOption(values, "learning_rate", DEFAULT_LEARNING_RATE[loss]),
    outputDir: stringOption(values, "output_dir") ?? D.output_dir,
    seed: intOption(values, "seed", D.seed),
    split: choiceOption(values, "split", ["train", "test"] as const, D.split),
    outputLength: intOption(values, "output_length", D.output_length, 1),
    numTwistSamples: intOption(values, "num_twist_samples", D.num_twist_samples, 1, MAX_PARTICLES),
    twistUpdatesPerExample: intOption(values, "twist_updates_per_example", D.twist_updates_per_example, 1),
    saveEvery: intOption(values, "save_every", D.save_every, 1),
    dataset: stringOption(values, "dataset") ?? D.dataset,
    loss,
    twist,
    rank: intOption(values, "rank", D.rank, 1),
    rewardFloor: numberOption(values, "reward_floor", D.reward_floor),
    contrastWeight: numberOption(values, "contrast_weight", D.contrast_weight),
    replay: intOption(values, "replay", objectiveFor(loss).replay ? D.replay : 0, 0),
    resume: values.resume === true,
    threads: threadsOption(values),
    device: choiceOption(values, "device", DEVICES, "auto"),
  };
  if (config.learningRate <= 0) throw new UsageError("--learning_rate must be > 0");
  if (!(config.contrastWeight >= 0)) throw new UsageError("--contrast_weight must be ≥ 0");
  const { levels, replay } = objectiveFor(config.loss);
  if (!levels.includes(config.twist))
    throw new UsageError(`--loss ${config.loss} trains a ${levels.join(" or ")} twist: add --twist ${levels[0]}`);
  if (config.replay > 0 && !replay)
    throw new UsageError(`--replay needs samples that do not depend on the twist being trained: only --loss prm has them`);
  return config;
}
