/** `twisted-smc eval`: the evaluation table on held-out problems, every row at the same budget N. */
import { parseArgs } from "node:util";
import { DEVICES, DeviceRequest } from "../lm/decoder/device";
import { loadModel } from "../lm/model/loadModel";
import { modelFileHelp, modelFileOptions } from "../lm/model/modelFolder";
import { withSystemPrompt } from "../lm/model/tokenizer";
import { evaluate, EvalReport, MeanStderr } from "../eval/evaluate";
import { loadProblems } from "../train/data";
import { shippedTwistPath } from "../twist/twistFile";
import { OnnxTokenTwist } from "../twist/onnxTwist";
import { loadDigitTwist, loadTwistOrVerifier } from "../twist/digitTwistFile";
import { StepTwist, TokenTwist } from "../smc/twist";
import { choiceOption, intOption, MAX_PARTICLES, OptionValues, stringOption, threadsOption, UsageError } from "../util/options";
import { backendHelp, BACKEND_OPTIONS, remoteModelOption } from "./backendOptions";
import { RemoteModel, remoteTwistFolder, remoteWithSystemPrompt } from "../remote/remoteModel";
import { evaluateRemote, RemoteEvalReport } from "../eval/evaluateRemote";
import { loadRemoteTwistOption } from "../twist/resolve";

export const EVAL_HELP = `Usage: twisted-smc eval [options]

Compares, at the same budget of N samples/particles per problem: greedy, single sample, majority
vote, best-of-N by the twist, SMC without twist, twisted SMC at token and step level (a posterior
sample, and the weighted vote), and the oracle pass@N; with the log Ẑ bounds of Zhao et al. at each
level with a twist, on the same problems (the answer known, each twist is read with its known-answer
floor).

Options:
  --model DIR                 model folder (default: the shipped model)
  --dataset synthetic|gsm8k|FILE   problems (default synthetic)
  --split train|test          (default test)
  --n N                       number of problems (default 500)
  --particles N               the budget N, 1 to ${MAX_PARTICLES} (default 16)
  --seed S                    (default 0)
  --twist FILE                a twist file (token or step); the other level uses the model's shipped twist
  --token-twist FILE|none     the token-level twist (default: the model folder's twist-token.json);
                              a line-verifier or digit-twist file is read digit by digit
  --step-twist FILE|none      the step-level twist (default: the model folder's twist-step.json)
  --max-tokens N              (default 96)
  --system TEXT               a system prompt, for a model with a chat template (default: none)
  --no-bounds                 skip the log Ẑ bounds (each level's two runs per problem)
  --device D, --threads N     the device, and CPU threads (1 to 256)
${modelFileHelp(27)}
${backendHelp(30)}
  --concurrency N             with a server: problems in flight at once, 1 to 256 (default 4)
  --json                      one JSON object`;

export async function evalCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" },
      dataset: { type: "string" },
      split: { type: "string" },
      n: { type: "string" },
      particles: { type: "string" },
      seed: { type: "string" },
      twist: { type: "string" },
      "token-twist": { type: "string" },
      "step-twist": { type: "string" },
      "max-tokens": { type: "string" },
      system: { type: "string" },
      "no-bounds": { type: "boolean" },
      device: { type: "string" },
      dtype: { type: "string" },
      "onnx-file": { type: "string" },
      threads: { type: "string" },
      json: { type: "boolean" },
      ...BACKEND_OPTIONS,
      concurrency: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(EVAL_HELP);
    return;
  }
  // Read before the model loads, so a mistake costs no loading time.
  const particles = intOption(values, "particles", 16, 1, MAX_PARTICLES);
  const remote = remoteModelOption(values, (line) => process.stderr.write(`\ntwisted-smc: ${line}\n`));
  if (remote) return evalOnServer(remote, values, particles);
  if (values.concurrency !== undefined)
    throw new UsageError("--concurrency is for --backend openai: the local backend runs one problem at a time");
  const model = await loadModel(stringOption(values, "model"), {
    threads: threadsOption(values),
    device: choiceOption<DeviceRequest>(values, "device", DEVICES, "auto"),
    ...modelFileOptions(values),
  });
  try {
    let tokenTwist: TokenTwist | undefined;
    let stepTwist: StepTwist | undefined;
    const names: Record<string, string | null> = { token: null, step: null };
    const use = async (path: string, level?: "token" | "step") => {
      // A digit-twist file, or a line verifier given as the token twist: read digit by digit (digitTwist.ts).
      const digits = level === "token" ? loadDigitTwist(path, model.lm.vocabSize, model.folder) : undefined;
      if (digits) {
        tokenTwist = digits;
        names.token = path;
        return;
      }
      const { head, meta } = loadTwistOrVerifier(path, model.folder);
      if (head.kind === "token") tokenTwist = await OnnxTokenTwist.create(head);
      else stepTwist = head;
      names[meta.kind] = path;
    };
    for (const level of ["token", "step"] as const) {
      const flag = stringOption(values, `${level}-twist`);
      if (flag === "none") continue;
      const path = flag ?? shippedTwistPath(model.folder, level);
      if (path) await use(path, level);
    }
    const twist = stringOption(values, "twist");
    if (twist) await use(twist);
    const { problems, skipped, description } = problemsOption(values);
    const started = performance.now();
    const report = await evaluate(withSystemPrompt(model, stringOption(values, "system")), problems, {
      particles,
      maxTokens: intOption(values, "max-tokens", 96, 1),
      seed: intOption(values, "seed", 0),
      tokenTwist,
      stepTwist,
      bounds: !values["no-bounds"],
      onProblem: values.json ? undefined : (done, total) => process.stderr.write(`\r${done}/${total} problems`),
    });
    if (!values.json) process.stderr.write("\n");
    const out = {
      data: description,
      skipped,
      model: model.folder.dir,
      modelFile: model.folder.onnxFile,
      device: model.lm.device,
      twists: names,
      seconds: Math.round((performance.now() - started) / 1000),
      ...report,
    };
    console.log(values.json ? JSON.stringify(out, null, 2) : formatReport(out));
  } finally {
    await model.lm.dispose();
  }
}

/** The problems of --dataset/--split/--n/--seed, or a usage error when there are none. */
function problemsOption(values: OptionValues) {
  const split = choiceOption(values, "split", ["train", "test"] as const, "test");
  const n = intOption(values, "n", 500, 1);
  const loaded = loadProblems(stringOption(values, "dataset") ?? "synthetic", split, n, intOption(values, "seed", 0));
  if (!loaded.problems.length) throw new UsageError("no problems to evaluate");
  return loaded;
}

/** `eval --backend openai`: the rows a server can give (evaluateRemote), problems overlapping. */
async function evalOnServer(model: RemoteModel, values: OptionValues, particles: number): Promise<void> {
  const tokenFlag = stringOption(values, "token-twist");
  if (tokenFlag !== undefined && tokenFlag !== "none")
    throw new UsageError("token-level twists need the model's next-token distribution, which a completions server does not return");
  if (values["no-bounds"] === undefined) values["no-bounds"] = true; // the bounds need the model's probabilities
  const stepFlag = stringOption(values, "twist") ?? stringOption(values, "step-twist");
  const twist = await loadRemoteTwistOption(stepFlag, remoteTwistFolder(model), "step");
  const system = stringOption(values, "system");
  const { problems, skipped, description } = problemsOption(values);
  const report = await evaluateRemote(remoteWithSystemPrompt(model, system), problems, {
    particles,
    maxTokens: intOption(values, "max-tokens", 96, 1),
    seed: intOption(values, "seed", 0),
    stepTwist: twist?.twist as StepTwist | undefined,
    concurrency: intOption(values, "concurrency", 4, 1, 256),
    onProblem: values.json ? undefined : (done, total) => process.stderr.write(`\r${done}/${total} problems`),
  });
  if (!values.json) process.stderr.write("\n");
  const out = {
    data: description,
    skipped,
    model: model.text.folder?.dir ?? model.text.name,
    ...(!model.text.folder && { formattedByServer: true }),
    server: model.server,
    backend: "openai",
    twists: { token: null, step: twist?.name ?? null },
    seconds: Math.round(report.wallSeconds),
    ...report,
  };
  console.log(values.json ? JSON.stringify(out, null, 2) : formatReport(out));
}

function formatReport(
  r: EvalReport &
    Partial<Pick<RemoteEvalReport, "problemsPerMinute" | "concurrency" | "requests">> & {
      data: string;
      model: string;
      modelFile?: string;
      device?: string;
      server?: string;
      formattedByServer?: boolean;
      twists: Record<string, string | null>;
      seconds: number;
    },
): string {
  const pct = (x: number) => (100 * x).toFixed(1).padStart(5);
  const lines = [
    `${r.n} problems from ${r.data}, N = ${r.particles}; twists: token ${r.twists.token ?? "none"}, step ${r.twists.step ?? "none"}`,
    "",
  ];
  lines.push(`${"method".padEnd(56)} accuracy        time`);
  for (const row of r.rows) {
    const acc = row.note === "no twist given" ? "    –        " : `${pct(row.accuracy)}% ± ${(100 * row.stderr).toFixed(1).padStart(4)}`;
    lines.push(
      `${row.method.padEnd(56)} ${acc}  ${String(row.seconds).padStart(6)} s${row.note && row.note !== "no twist given" ? `   (${row.note})` : ""}`,
    );
  }
  const z = ({ mean, stderr }: MeanStderr, sign = "") =>
    Number.isFinite(mean) ? `${sign && mean >= 0 ? "+" : ""}${mean.toFixed(3)} ± ${stderr.toFixed(3)}` : "n/a";
  if (r.bounds) {
    lines.push("", `log Ẑ bounds over ${r.bounds.problems} problems:`);
    for (const b of r.bounds.levels)
      lines.push(
        `  ${`${b.level} level`.padEnd(12)} lower ${z(b.lower)}, upper ${z(b.upper)}   (SMC found Ẑ = 0 on ${b.zeros} of ${r.bounds.withSample})`,
      );
    const d = r.bounds.tokenMinusStep;
    if (d)
      lines.push(
        `  token − step lower ${z(d.lower, "+")}, upper ${z(d.upper, "+")}   (per problem; tighter at token level: lower > 0, upper < 0)`,
      );
    lines.push(`  (${r.bounds.note})`);
  }
  if (r.server) {
    lines.push(
      "",
      "Token-level SMC and the log Ẑ bounds need the model's probabilities: the local backend's rows alone.",
      `Times are per method summed over problems; ${r.concurrency} problems ran at once.`,
      "",
      `Model: ${r.server}, ${r.formattedByServer ? "prompt formatted by the server" : `tokenizer ${r.model}`}`,
      `total ${r.seconds} s, ${r.problemsPerMinute} problems/minute, ${r.requests} requests`,
    );
  } else lines.push("", `Model: ${r.model} (${r.modelFile}) on ${r.device}`, `total ${r.seconds} s`);
  return lines.join("\n");
}
