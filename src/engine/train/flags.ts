/** The trainer's flags by the seed's names, their defaults, and their reading into a TrainConfig. */
import { choiceOption, intOption, numberOption, OptionValues, stringOption, UsageError } from "../util/options";
import { TrainConfig } from "./trainer";

/** Defaults measured on the shipped model: about 10 minutes (token) and 4 minutes (step) on 2 cores. */
export const TRAIN_DEFAULTS = {
  num_examples: 2000, num_epochs: 1, batch_size: 8, output_dir: "math_twist_model", seed: 42, split: "train",
  output_length: 96, num_twist_samples: 8, twist_updates_per_example: 1, save_every: 10, dataset: "synthetic", loss: "ctl", twist: "token", rank: 32, reward_floor: 0.001,
} as const;

/** The value head's few parameters take a larger step than the token head's many. */
export const DEFAULT_LEARNING_RATE = { token: 0.01, step: 0.05 } as const;

/** A TrainConfig from flags by the seed's names (strings as typed, or values); shared with the engine server. */
export function trainConfigFromFlags(values: OptionValues): TrainConfig {
  const D = TRAIN_DEFAULTS;
  const twist = choiceOption(values, "twist", ["token", "step"] as const, D.twist);
  const config: TrainConfig = {
    modelName: stringOption(values, "model_name"),
    numExamples: intOption(values, "num_examples", D.num_examples, 1),
    numEpochs: intOption(values, "num_epochs", D.num_epochs, 1),
    batchSize: intOption(values, "batch_size", D.batch_size, 1),
    learningRate: numberOption(values, "learning_rate", DEFAULT_LEARNING_RATE[twist]),
    outputDir: stringOption(values, "output_dir") ?? D.output_dir,
    seed: intOption(values, "seed", D.seed),
    split: choiceOption(values, "split", ["train", "test"] as const, D.split),
    outputLength: intOption(values, "output_length", D.output_length, 1),
    numTwistSamples: intOption(values, "num_twist_samples", D.num_twist_samples, 1),
    twistUpdatesPerExample: intOption(values, "twist_updates_per_example", D.twist_updates_per_example, 1),
    saveEvery: intOption(values, "save_every", D.save_every, 1),
    dataset: stringOption(values, "dataset") ?? D.dataset,
    loss: choiceOption(values, "loss", ["ctl", "bce"] as const, D.loss),
    twist,
    rank: intOption(values, "rank", D.rank, 1),
    rewardFloor: numberOption(values, "reward_floor", D.reward_floor),
    resume: values.resume === true,
    threads: values.threads === undefined ? undefined : intOption(values, "threads", 1, 1),
  };
  if (config.learningRate <= 0) throw new UsageError("--learning_rate must be > 0");
  if (config.loss === "bce" && config.twist !== "step") throw new UsageError("--loss bce trains a value (step) twist: add --twist step");
  return config;
}
