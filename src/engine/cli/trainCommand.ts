/**
 * `twisted-smc train`: the seed's trainer with its flag names (snake_case, kebab-case aliases too).
 * SIGINT/SIGTERM stop after the batch in progress and keep a checkpoint for --resume (stopped while the
 * digit twist's head is fitted after the epochs, --resume fits it again).
 */
import { parseArgs } from "node:util";
import { BatchMetrics, REPLAY_WINDOW, train } from "../train/trainer";
import { loadModel } from "../lm/model/loadModel";
import { modelFileHelp, modelFileOptions } from "../lm/model/modelFolder";
import { DEFAULT_LEARNING_RATE, TRAIN_DEFAULTS, TRAIN_FLAGS, trainConfigFromFlags } from "../train/flags";
import { FINAL_POWER_FIT } from "../train/finalPower";
import { CALIBRATION_PROBLEMS, MEMORY_PROBLEMS, PARTIAL_HEAD_FIT } from "../train/partialResults";
import { choiceOption, OptionValues, UsageError } from "../util/options";
import { FINISH_PART_NAMES, finishProgressShown, finishProgressText, heldOutLine, type TrainProgressLine } from "../../protocol/training";

const D = TRAIN_DEFAULTS;

export const TRAIN_HELP = `Usage: twisted-smc train [options]

Learns a twist for a model on problems with known answers and writes it to --output_dir
(twist.json, checkpoint.json every --save_every batches, metrics.jsonl). Flags keep the seed's names;
--num-examples style works too.

Options:
  --model_name DIR|ID              model folder, or a Hub id (org/name[@revision]) fetched with models pull
                                   (default: the shipped model)
  --num_examples N                 problems to train on (default ${D.num_examples})
  --num_epochs N                   passes over them (default ${D.num_epochs})
  --batch_size N                   problems per update (default ${D.batch_size})
  --learning_rate X                Adam step size (default ${DEFAULT_LEARNING_RATE.prm} for prm and ctl, ${DEFAULT_LEARNING_RATE.bce} for bce)
  --output_dir DIR                 where the twist, checkpoints and metrics go (default ${D.output_dir})
  --seed S                         seed for data order and sampling (default ${D.seed})
  --split train|test               data split (default ${D.split})
  --dataset synthetic|gsm8k|FILE   problems: generated, GSM8K, or a GSM8K-format JSONL file (default ${D.dataset})
  --output_length N                tokens per sample at most (default ${D.output_length})
  --num_twist_samples K            samples (and SMC particles for ctl) per problem (default ${D.num_twist_samples})
  --twist_updates_per_example N    Adam steps per batch on the same samples (default ${D.twist_updates_per_example})
  --save_every N                   checkpoint every N batches (default ${D.save_every})
  --twist token|step               a token-level twist, or a step-level (per line) one (default ${D.twist})
  --loss ctl|bce|prm               ctl: contrastive twist learning; bce: value regression of the hidden-state
                                   value head (step); prm: the line verifier, learned from line labels mined
                                   from outcomes, refitted after the epochs in small steps on plain samples of
                                   up to ${PARTIAL_HEAD_FIT.problems} of the problems, given a memory of the results right
                                   samples of up to ${MEMORY_PROBLEMS} wrote, its base rate per operator and the memory's
                                   weights then set on up to ${CALIBRATION_PROBLEMS.most} held-out ones, and twisted SMC on up to
                                   ${FINAL_POWER_FIT.problems} of them choosing the power γ solutions end on, φ^γ, when the answer
                                   is unknown (the best calibrated posterior) — at token level with the digit twist's
                                   partial-result head and result lengths, fitted to it on the refit's samples
                                   (default prm at either level)
  --contrast_weight X              prm: weight of each mined result's one-digit changes, labelled wrong
                                   (default ${D.contrast_weight}; 0: the mined labels alone)
  --replay N                       prm: each update also reads N batches of earlier problems' samples, drawn
                                   from the last ${REPLAY_WINDOW} problems (default ${D.replay}; 0: fresh samples only)
  --rank R                         rank of the token head or of the line verifier (default ${D.rank})
  --reward_floor X                 final potential of a wrong answer while training, φ = 1 if right (default ${D.reward_floor})
  --resume                         continue the run in --output_dir from its last checkpoint
  --threads N                      CPU threads (default: all cores)
  --device D                       auto|cpu|webgpu|cuda: where the model runs (default auto: a GPU when one
                                   opens, else the CPU)
${modelFileHelp(32, "--onnx_file")}
  --progress text|json             one human line per batch, or JSON lines for the editor (default text)`;

const FLAGS = TRAIN_FLAGS.filter((f) => f !== "help");

/** Exit code 130 when a signal stopped training (a checkpoint is kept). */
export async function trainCommand(argv: string[]): Promise<number | void> {
  const options: Record<string, { type: "string" | "boolean" }> = { help: { type: "boolean" } };
  for (const f of FLAGS) {
    const type = f === "resume" ? "boolean" : "string";
    options[f] = { type };
    if (f.includes("_")) options[f.replace(/_/g, "-")] = { type };
  }
  const { values: raw, positionals } = parseArgs({ args: argv, options, allowPositionals: true });
  if (raw.help) {
    console.log(TRAIN_HELP);
    return;
  }
  if (positionals.length) throw new UsageError(`train takes no positional arguments (got "${positionals[0]}")`);
  // Fold kebab-case aliases onto the seed's names.
  const values: OptionValues = {};
  for (const [k, v] of Object.entries(raw)) values[k.replace(/-/g, "_")] = v as string | boolean;
  const config = trainConfigFromFlags(values);
  const file = modelFileOptions(values, "onnx_file");
  const json = choiceOption(values, "progress", ["text", "json"] as const, "text") === "json";
  const emit = (line: TrainProgressLine) => console.log(JSON.stringify(line));

  const controller = new AbortController();
  const stop = (signal: string) => {
    if (controller.signal.aborted) process.exit(130);
    if (!json) console.error(`\n${signal}: stopping after the current batch or problem (a checkpoint is kept; --resume continues)…`);
    controller.abort();
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));

  // A precision or file asked for: the model loads here, on the device the trainer's own would use (a
  // Hub id not downloaded yet is refused by both, before anything is written).
  const preloaded =
    file.dtype !== "auto" || file.onnxFile !== undefined
      ? await loadModel(config.modelName, { threads: config.threads, device: config.device, ...file })
      : undefined;
  const result = await train(
    config,
    {
      signal: controller.signal,
      onStart: (info) => {
        if (json) return emit({ type: "start", ...info, config: { ...config } });
        console.log(`Training a ${config.twist}-level twist (${config.loss}) for ${info.model}`);
        console.log(
          `  data: ${info.data}, ${info.problems} problems, ${info.batchesPerEpoch} batches per epoch × ${config.numEpochs} epochs${info.resumedAt !== undefined ? `, resuming after batch ${info.resumedAt}` : ""}`,
        );
        console.log(`  device: ${info.device}`);
        if (info.heldOut) console.log(`  ${heldOutLine(info.heldOut)}`);
        for (const s of info.skipped) console.log(`  skipped ${s}`);
      },
      onBatch: (m: BatchMetrics, total: number) => {
        if (json) return emit({ type: "batch", total, ...m });
        console.log(
          `[${String(m.step).padStart(String(total).length)}/${total}] epoch ${m.epoch + 1} loss ${m.loss.toFixed(4)} reward ${m.reward.toFixed(3)} ` +
            `sample acc ${m.sampleAccuracy.toFixed(3)} ESS ${(100 * m.ess).toFixed(0)}% log Ẑ ${m.logZ.toFixed(2)} ${m.seconds}s`,
        );
      },
      onCheckpoint: (path) => (json ? emit({ type: "checkpoint", path }) : undefined),
      onFinishProgress: (p) => {
        // Sampling and SMC report every problem: a line per 100 is enough to show them moving.
        if (!finishProgressShown(p)) return;
        if (json) return emit({ type: "finish", ...p });
        console.log(`[${FINISH_PART_NAMES[p.part]}] ${finishProgressText(p)}`);
      },
    },
    preloaded,
  ).finally(() => preloaded?.lm.dispose());
  if (json) emit({ type: "end", ...result });
  else if (result.stopped)
    console.log(`Stopped after ${result.batches} batches; checkpoint in ${config.outputDir}. Run again with --resume to continue.`);
  else console.log(`Done: ${result.batches} batches. Twist written to ${result.twistPath}`);
  return result.stopped ? 130 : 0;
}
