/** `twisted-smc solve "<problem>"`: twisted SMC over the model, printing the answer and its posterior. */
import { accessSync, constants, existsSync, readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { decodeLogWeight } from "../../protocol/record";
import { DEVICES, DeviceRequest } from "../lm/decoder/device";
import { loadModel, withCpuFallback } from "../lm/model/loadModel";
import { modelFileHelp, modelFileOptions } from "../lm/model/modelFolder";
import { withSystemPrompt } from "../lm/model/tokenizer";
import { goldAnswer, parseNumber } from "../math/answer";
import { RESAMPLING_SCHEMES, ResamplingScheme } from "../smc/resampling";
import { DEFAULT_SOLVE_OPTIONS, solve, SolveOptions, SolveResult } from "../solve";
import { writeFileAtomic } from "../util/atomicWrite";
import { DiskFullError, InputError } from "../util/errors";
import { choiceOption, intOption, MAX_PARTICLES, numberOption, stringOption, threadsOption, UsageError } from "../util/options";
import { loadRemoteTwistOption, loadTwistOption } from "../twist/resolve";
import { lineSmcRefusal } from "../smc/lineSmc";
import { backendHelp, BACKEND_OPTIONS, remoteModelOption } from "./backendOptions";
import { RemoteModel, remoteTwistFolder, remoteWithSystemPrompt } from "../remote/remoteModel";

const D = DEFAULT_SOLVE_OPTIONS;

export const SOLVE_HELP = `Usage: twisted-smc solve "<problem>" [options]
       twisted-smc solve --file FILE [options]
       twisted-smc solve - [options]          (the problem on standard input)

Runs twisted Sequential Monte Carlo: K particles advance through the model in one batch, are
reweighted by the twist and resampled when their effective sample size drops; the answer is the
weighted vote over the particles' final answers.

Options:
  --file FILE              read the problem from FILE (a problem over 16 KB must come from a file or stdin)
  --model DIR              model folder or Hub id (default: the shipped models/tiny-math-llama); with a
                           server, only its tokenizer files are read (the prompt and the EOS ids), and
                           without it the server formats the prompt
  --twist FILE|none        twist file (default: the model folder's shipped twist for --level, else none)
  --particles K            number of particles, 1 to ${MAX_PARTICLES} (default ${D.particles})
  --level token|step       twist and resample per token, or per reasoning line (default ${D.level})
  --resampling SCHEME      ${RESAMPLING_SCHEMES.join("|")} (default ${D.resampling})
  --ess-threshold X        resample when ESS < X·K (default ${D.essThreshold})
  --resample WHEN          adaptive|always|never (default ${D.resample})
  --max-tokens N           tokens per particle at most (default ${D.maxTokens})
  --temperature T          proposal temperature, > 0 (default ${D.temperature})
  --seed S                 random seed (default ${D.seed})
  --gold N                 a known answer: the final potential becomes the reward (and a
                           line-verifier twist keeps its known-answer floor under each line
                           and reads the answer: the line that gives it is steered toward it,
                           every other line is read at its end)
  --system TEXT            a system prompt, for a model with a chat template (default: none)
  --device D               ${DEVICES.join("|")} (default auto)
${modelFileHelp(24)}
  --threads N              CPU threads, 1 to 256 (default: all cores)
${backendHelp(27)}
  --json                   print one JSON object
  --record FILE            write the step-by-step record (for replay) to FILE`;

/**
 * The longest problem taken on the command line, in bytes. onnxruntime-node (1.30) reads the whole
 * command line (/proc/self/cmdline) when its environment starts, at the first session, and overflows
 * the stack on a long one: a segfault from about 28.5 KB under the usual 8 MB stack (14–16 KB under a
 * 4 MB one). A longer problem comes from a file or standard input, which onnxruntime never sees.
 */
export const MAX_PROBLEM_ARGUMENT_BYTES = 16 * 1024;

/**
 * The problem text of `solve` or `sample`: the positional words, the file --file names, or standard
 * input for a lone "-". Checked before any model loads: a problem too long for onnxruntime's start is
 * refused here rather than crashing it.
 */
export async function readProblem(command: string, positionals: string[], file: string | undefined): Promise<string> {
  const needs = (why: string) => new UsageError(`${command} needs a problem text: ${why}`);
  if (file !== undefined && positionals.length)
    throw new UsageError(`${command} takes the problem either as an argument or with --file, not both`);
  if (file !== undefined) {
    const text = readProblemFile(file).trim();
    if (!text) throw needs(`${file} is empty`);
    return text;
  }
  if (positionals.length === 1 && positionals[0] === "-") {
    const text = (await readStdin()).trim();
    if (!text) throw needs("standard input was empty");
    return text;
  }
  const text = positionals.join(" ").trim();
  if (!text) throw needs(`give it in quotes, with --file FILE, or on standard input with "${command} -"`);
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_PROBLEM_ARGUMENT_BYTES) {
    throw new UsageError(
      `the problem is ${bytes.toLocaleString("en-US")} bytes, too long for the command line (at most 16 KB): pass it with --file FILE, or on standard input with "${command} -"`,
    );
  }
  return text;
}

function readProblemFile(file: string): string {
  try {
    return readFileSync(file, "utf8").replace(/^\uFEFF/, "");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "no such file"
        : code === "EISDIR"
          ? "it is a folder"
          : code === "EACCES"
            ? "permission denied"
            : (e as Error).message;
    throw new InputError(`cannot read the problem file ${file}: ${why}`);
  }
}

async function readStdin(): Promise<string> {
  // A terminal waits for the user to type: say how to end, so it does not look like a hang.
  if (process.stdin.isTTY) console.error("twisted-smc: reading the problem from standard input; end it with Ctrl-D");
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * Refuses, before the work starts, a --record path no file can be written to: a folder, or a place
 * under a file or a folder this user cannot write. writeFileAtomic makes missing folders, so the
 * nearest folder that exists is the one that must be writable.
 */
export function checkRecordPath(file: string): void {
  const path = resolve(file);
  if (existsSync(path) && statSync(path).isDirectory()) throw new UsageError(`--record ${file} is a folder; give the path of a file`);
  let dir = dirname(path);
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  if (!statSync(dir).isDirectory()) throw new UsageError(`--record ${file}: ${dir} is not a folder`);
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new UsageError(`--record ${file}: cannot write in ${dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/**
 * Prints the result, then writes its record: a record that still cannot be written (the disk filled
 * during the run) costs the record, not the answer. The failure is thrown after the answer is out.
 */
export function printThenRecord(
  output: string,
  record: { file: string; record: unknown } | undefined,
  print: (text: string) => void = console.log,
  write: (path: string, data: string) => void = writeFileAtomic,
): void {
  print(output);
  if (!record) return;
  try {
    write(record.file, JSON.stringify(record.record) + "\n");
  } catch (e) {
    if (e instanceof DiskFullError) throw e; // its own line says to free space
    throw new InputError(`could not write the record ${record.file}: ${(e as Error).message}`);
  }
}

export async function solveCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      file: { type: "string" },
      model: { type: "string" },
      twist: { type: "string" },
      particles: { type: "string" },
      level: { type: "string" },
      resampling: { type: "string" },
      "ess-threshold": { type: "string" },
      resample: { type: "string" },
      "max-tokens": { type: "string" },
      temperature: { type: "string" },
      seed: { type: "string" },
      gold: { type: "string" },
      system: { type: "string" },
      device: { type: "string" },
      dtype: { type: "string" },
      "onnx-file": { type: "string" },
      threads: { type: "string" },
      json: { type: "boolean" },
      record: { type: "string" },
      ...BACKEND_OPTIONS,
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(SOLVE_HELP);
    return;
  }
  const problem = await readProblem("solve", positionals, stringOption(values, "file"));
  const recordFile = stringOption(values, "record");
  if (recordFile !== undefined) checkRecordPath(recordFile);
  const level = choiceOption(values, "level", ["token", "step"] as const, D.level);
  const essThreshold = numberOption(values, "ess-threshold", D.essThreshold);
  if (essThreshold > 1) throw new UsageError("--ess-threshold must be between 0 and 1");
  const temperature = numberOption(values, "temperature", D.temperature);
  if (temperature <= 0) throw new UsageError("--temperature must be > 0 for SMC (use `sample --temperature 0` for greedy)");
  // Read before the model loads, so a mistake costs no loading time.
  const particles = intOption(values, "particles", D.particles, 1, MAX_PARTICLES);
  const seed = intOption(values, "seed", D.seed);
  let gold: number | undefined;
  if (values.gold !== undefined) {
    gold = parseNumber(values.gold) ?? goldAnswer(values.gold);
    if (gold === undefined) throw new UsageError(`--gold must be a number, got "${values.gold}"`);
  }
  const loadOptions = {
    threads: threadsOption(values),
    device: choiceOption<DeviceRequest>(values, "device", DEVICES, "auto"),
    ...modelFileOptions(values),
  };
  const system = stringOption(values, "system");
  const settings = {
    particles,
    level,
    resampling: choiceOption<ResamplingScheme>(values, "resampling", RESAMPLING_SCHEMES, D.resampling),
    essThreshold,
    resample: choiceOption(values, "resample", ["adaptive", "always", "never"] as const, D.resample),
    maxTokens: intOption(values, "max-tokens", D.maxTokens, 1),
    temperature,
    seed,
    gold,
    record: recordFile !== undefined,
  };
  const print = (result: SolveResult) => {
    const record = recordFile !== undefined ? { file: recordFile, record: result.record } : undefined;
    delete result.record;
    printThenRecord(values.json ? JSON.stringify(result, null, 2) : formatSolve(result), record);
  };
  const remote = remoteModelOption(values, (line) => console.error(`twisted-smc: ${line}`));
  if (remote) return print(await solveOnServer(remote, problem, system, stringOption(values, "twist"), settings));
  let model = await loadModel(stringOption(values, "model"), loadOptions);
  try {
    const twist = await loadTwistOption(stringOption(values, "twist"), model, level);
    const result = await withCpuFallback(
      model,
      loadOptions,
      (m) => solve(withSystemPrompt(m, system), problem, { ...settings, twist: twist?.twist, twistName: twist?.name ?? null }),
      (cpu) => {
        void model.lm.dispose();
        model = cpu;
      },
    );
    print(result);
  } finally {
    await model.lm.dispose();
  }
}

/** `solve --backend openai`: what the server cannot do is refused before the first request. */
async function solveOnServer(
  model: RemoteModel,
  problem: string,
  system: string | undefined,
  twistOption: string | undefined,
  settings: Omit<SolveOptions, "twist" | "twistName">,
): Promise<SolveResult> {
  const early = lineSmcRefusal({ level: settings.level, temperature: settings.temperature });
  if (early) throw new UsageError(early);
  const twist = await loadRemoteTwistOption(twistOption, remoteTwistFolder(model), settings.level);
  return solve(remoteWithSystemPrompt(model, system), problem, { ...settings, twist: twist?.twist, twistName: twist?.name ?? null });
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/**
 * C0 and C1 control characters but the line break, and the bidirectional overrides: in a terminal they
 * recolour, move the cursor or reorder text, so what the CLI echoes (the user's problem, the model's
 * untrusted output) shows them escaped, \x1b or \u{202e}.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g;

export function escapeControl(text: string): string {
  return text.replace(CONTROL, (c) => {
    const code = c.codePointAt(0)!;
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`;
  });
}

export function formatSolve(r: SolveResult): string {
  const lines = [
    `Problem: ${escapeControl(r.problem).split("\n").join("\n         ")}`,
    `Answer:  ${r.answer === null ? "(no particle gave an answer)" : r.confidence.summary}`,
    ...(r.confidence.outOfDepth ? [`         ⚠ ${r.confidence.outOfDepth}`] : []),
    "",
    "Posterior over answers:",
    ...r.posterior
      .slice(0, 8)
      .map((a) => `  ${a.answer.padStart(8)}  ${pct(a.probability).padStart(6)}  (${a.particles} particle${a.particles === 1 ? "" : "s"})`),
  ];
  if (r.unanswered > 0) lines.push(`  ${"(none)".padStart(8)}  ${pct(r.unanswered).padStart(6)}`);
  const best = r.particles
    .map((p, i) => ({ p, i }))
    .filter(({ p }) => p.answer === r.answer)
    .sort((a, b) => decodeLogWeight(b.p.logWeight) - decodeLogWeight(a.p.logWeight))[0];
  if (best)
    lines.push(
      "",
      `Chosen solution (particle ${best.i + 1}):`,
      ...escapeControl(best.p.text)
        .split("\n")
        .map((l) => `  ${l}`),
    );
  const minEss = r.ess.length ? Math.min(...r.ess) : r.particles.length;
  lines.push(
    "",
    `SMC:     ${r.particles.length} particles, ${r.level} level, twist ${r.twist ?? "none"}, ${r.steps} steps, ` +
      `resampled ${r.resampledAt.length}×, min ESS ${minEss.toFixed(1)}, log Ẑ ${r.logZ.toFixed(3)}`,
    r.server
      ? `Model:   ${r.server}, ${r.formattedByServer ? "prompt formatted by the server" : `tokenizer ${r.model}`}`
      : `Model:   ${r.model}${r.modelFile ? ` (${r.modelFile})` : ""} on ${r.device}`,
    ...(r.deviceChoice?.includes("not used") ? [`Device:  ${r.deviceChoice}`] : []),
    `Timing:  ${r.timing.totalMs} ms, ${r.timing.requests !== undefined ? `${r.timing.requests} requests` : `${r.timing.forwardPasses} forward passes`}, ${r.timing.generatedTokens} tokens (${r.timing.tokensPerSecond} tokens/s)`,
  );
  if (r.collapsed) lines.push(`Warning: ${r.collapsed}`);
  for (const w of r.warnings ?? []) lines.push(`Warning: ${w}`);
  if (r.correct !== undefined) lines.push(`Known answer: ${r.correct ? "correct" : "wrong"}`);
  return lines.join("\n");
}
