#!/usr/bin/env node
/** The `twisted-smc` command line: a thin shell over the engine. Known errors print one clear line. */
import { DiskFullError, InputError } from "../util/errors";
import { UsageError } from "../util/options";
import { dataCommand, DATA_HELP } from "./dataCommand";
import { gradeCommand, GRADE_HELP } from "./gradeCommand";
import { sampleCommand, SAMPLE_HELP } from "./sampleCommand";
import { solveCommand, SOLVE_HELP } from "./solveCommand";
import { trainCommand, TRAIN_HELP } from "./trainCommand";
import { evalCommand, EVAL_HELP } from "./evalCommand";
import { modelsCommand, MODELS_HELP } from "./modelsCommand";
import { serve } from "../server/main";
import { RemoteServerError } from "../remote/retry";

declare const PACKAGE_VERSION: string | undefined;
const version = typeof PACKAGE_VERSION === "string" ? PACKAGE_VERSION : "dev";

const HELP = `twisted-smc ${version}: solve math word problems with a language model and twisted SMC.

Commands:
  solve "<problem>"      twisted SMC: the answer, its posterior, the particles
  sample "<problem>"     K plain samples from the model with their extracted answers
  grade --jsonl FILE     extract answers from responses and reward them against gold answers
  train                  learn a twist on problems with known answers
  eval                   accuracy table: greedy, sampling, voting, SMC and twisted SMC at one budget
  serve --stdio          the engine process: JSON-RPC over standard input/output (what the editor runs)
  data synth             synthetic word problems as GSM8K-format JSONL
  models pull|info|list|rm  a Hub model: download it into the Hugging Face cache, see its variants, list, remove

Run "twisted-smc <command> --help" for a command's options.

Exit codes: 0 done; 1 an unexpected error; 2 a mistake in the command; 3 a broken or unusable input
(model folder, twist file, checkpoint, data, output folder); 4 the disk is full (free space and run
again); 5 the inference server (--server) could not be used; 130 stopped by a signal (train keeps a checkpoint).

${SOLVE_HELP}

${SAMPLE_HELP}

${GRADE_HELP}

${TRAIN_HELP}

${EVAL_HELP}

${DATA_HELP}

${MODELS_HELP}`;

/** A command returns its exit code, or nothing for 0 (the codes are listed in HELP). */
const COMMANDS: Record<string, (argv: string[]) => Promise<number | void>> = {
  solve: solveCommand,
  sample: sampleCommand,
  grade: gradeCommand,
  train: trainCommand,
  eval: evalCommand,
  serve: async (argv) => {
    if (!argv.some((a) => a === "--stdio" || a === "--node-ipc" || a.startsWith("--socket=") || a.startsWith("--pipe="))) {
      throw new UsageError("serve needs a transport: --stdio (or --node-ipc, --socket=PORT, --pipe=NAME)");
    }
    serve();
    return new Promise<never>(() => undefined); // serves until the connection closes and exits the process
  },
  data: dataCommand,
  models: modelsCommand,
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === "--help" || command === "-h" || command === "help") {
    console.log(HELP);
    return 0;
  }
  if (command === "--version" || command === "-v") {
    console.log(version);
    return 0;
  }
  const run = COMMANDS[command];
  try {
    if (!run) throw new UsageError(`unknown command "${command}"; commands: ${Object.keys(COMMANDS).join(", ")}`);
    return (await run(rest)) ?? 0;
  } catch (e) {
    const err = e as Error & { code?: string };
    // Every parseArgs error (ERR_PARSE_ARGS_*: an unknown option, a stray positional, a missing value) is a usage mistake.
    if (e instanceof UsageError || (typeof err.code === "string" && err.code.startsWith("ERR_PARSE_ARGS_"))) {
      // Some of node's messages take three lines (`--seed -1`: "ambiguous… Did you forget…"): one is enough.
      console.error(`twisted-smc: ${e instanceof UsageError ? err.message : err.message.replace(/\s*\n\s*/g, " ")}`);
      return 2;
    }
    // Not the user's files: the disk. The one line names the file and folder and says to free space.
    if (e instanceof DiskFullError) {
      console.error(`twisted-smc: ${err.message}`);
      return 4;
    }
    // The server's URL and what it answered (never the key): start it, or check --server.
    if (e instanceof RemoteServerError) {
      console.error(`twisted-smc: the inference server failed: ${err.message}`);
      return 5;
    }
    if (e instanceof InputError || e instanceof RangeError) {
      console.error(`twisted-smc: ${err.message}`);
      return 3;
    }
    console.error(`twisted-smc: unexpected error: ${err.stack ?? err.message}`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
