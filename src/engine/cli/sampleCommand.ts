/** `twisted-smc sample "<problem>"`: plain batched sampling from the model, with extracted answers. */
import { parseArgs } from "node:util";
import { encodeWithinContext } from "../lm/model/contextWindow";
import { extractAnswer } from "../math/answer";
import { generate } from "../lm/generate";
import { loadModel } from "../lm/model/loadModel";
import { modelFileHelp, modelFileOptions } from "../lm/model/modelFolder";
import { withSystemPrompt } from "../lm/model/tokenizer";
import { DEVICES, DeviceRequest } from "../lm/decoder/device";
import { choiceOption, intOption, MAX_PARTICLES, numberOption, stringOption, threadsOption } from "../util/options";
import { escapeControl, readProblem } from "./solveCommand";
import { backendHelp, BACKEND_OPTIONS, remoteModelOption } from "./backendOptions";
import { RemoteModel, remoteWithSystemPrompt } from "../remote/remoteModel";

export const SAMPLE_HELP = `Usage: twisted-smc sample "<problem>" [options]
       twisted-smc sample --file FILE [options]
       twisted-smc sample - [options]     (the problem on standard input)

Draws K solutions from the model in one batch (shared prompt prefilled once, KV cache) and prints
each with its extracted final answer, then the answers by count.

Options:
  --file FILE          read the problem from FILE (a problem over 16 KB must come from a file or stdin)
  --model DIR          model folder or Hub id (default: the shipped models/tiny-math-llama); with a
                       server, only its tokenizer files are read (without it, the server formats the prompt)
  -k, --samples K      number of samples, 1 to ${MAX_PARTICLES} (default 8)
  --max-tokens N       tokens per sample at most (default: generation_config.json, else 128)
  --temperature T      0 is greedy (default 1)
  --seed S             random seed (default 0)
  --system TEXT        a system prompt, for a model with a chat template (default: none)
  --device D           auto|cpu|webgpu|cuda (default auto)
${modelFileHelp(20)}
  --threads N          onnxruntime intra-op threads, 1 to 256 (default: all cores)
${backendHelp(23)}
  --json               print one JSON object instead of text`;

export interface SampleReport {
  problem: string;
  model: string;
  /** The ONNX file loaded, relative to the model folder (local backend). */
  modelFile?: string;
  /** A device, or "server" for the openai backend. */
  device: string;
  deviceChoice?: string;
  /** The inference server's URL and served model (openai backend). */
  server?: string;
  /** Set when the server's own chat template and tokenizer made the prompt. */
  formattedByServer?: boolean;
  samples: { text: string; answer: string | null; finishReason: string; tokens: number }[];
  answers: { answer: string; count: number }[];
  /** On a server, prefill and decode are one request: decodeMs is the request's time and prefillMs 0. */
  timing: {
    prefillMs: number;
    decodeMs: number;
    tokensPerSecond: number;
    promptTokens: number;
    generatedTokens: number;
    requests?: number;
  };
}

export async function sampleCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      file: { type: "string" },
      model: { type: "string" },
      samples: { type: "string", short: "k" },
      "max-tokens": { type: "string" },
      temperature: { type: "string" },
      seed: { type: "string" },
      system: { type: "string" },
      threads: { type: "string" },
      device: { type: "string" },
      dtype: { type: "string" },
      "onnx-file": { type: "string" },
      json: { type: "boolean" },
      ...BACKEND_OPTIONS,
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(SAMPLE_HELP);
    return;
  }
  const problem = await readProblem("sample", positionals, stringOption(values, "file"));
  const threads = threadsOption(values);
  // Flags are read before the model loads, so a mistake in one costs no loading time.
  const numSamples = intOption(values, "samples", 8, 1, MAX_PARTICLES);
  const temperature = numberOption(values, "temperature", 1);
  const seed = intOption(values, "seed", 0);
  const remote = remoteModelOption(values, (line) => console.error(`twisted-smc: ${line}`));
  if (remote) {
    const text = remoteWithSystemPrompt(remote, stringOption(values, "system")).text;
    const fitted = await text.prompt(problem, intOption(values, "max-tokens", text.folder?.generation.maxNewTokens ?? 128, 1));
    if (fitted.warning) console.error(`twisted-smc: ${fitted.warning}`);
    const report = await sampleOnServer(remote, problem, fitted.prompt, numSamples, fitted.maxTokens, temperature);
    console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
    return;
  }
  const device = choiceOption<DeviceRequest>(values, "device", DEVICES, "auto");
  const model = await loadModel(stringOption(values, "model"), { threads, device, ...modelFileOptions(values) });
  const { folder, tokenizer, lm } = model;
  try {
    const fitted = encodeWithinContext(
      withSystemPrompt(model, stringOption(values, "system")),
      problem,
      intOption(values, "max-tokens", folder.generation.maxNewTokens ?? 128, 1),
    );
    if (fitted.warning) console.error(`twisted-smc: ${fitted.warning}`);
    const result = await generate(lm, fitted.prompt, {
      numSamples,
      maxTokens: fitted.maxTokens,
      temperature,
      seed,
      isEos: (t) => tokenizer.isEos(t),
    });
    const samples = result.sequences.map((s) => sampleOf(tokenizer.decode(s.tokens), s.finishReason, s.tokens.length));
    const report: SampleReport = {
      problem,
      model: folder.dir,
      modelFile: folder.onnxFile,
      device: lm.device,
      deviceChoice: lm.deviceChoice,
      samples,
      answers: answerCounts(samples),
      timing: {
        prefillMs: round(result.prefillMs),
        decodeMs: round(result.decodeMs),
        tokensPerSecond: Math.round(result.generatedTokens / Math.max(result.decodeMs / 1000, 1e-9)),
        promptTokens: result.promptTokens,
        generatedTokens: result.generatedTokens,
      },
    };
    console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
  } finally {
    await lm.dispose();
  }
}

const round = (x: number) => Math.round(x * 10) / 10;

const sampleOf = (text: string, finishReason: string, tokens: number) => ({
  text,
  answer: extractAnswer(text)?.key ?? null,
  finishReason,
  tokens,
});

function answerCounts(samples: SampleReport["samples"]): SampleReport["answers"] {
  const counts = new Map<string, number>();
  for (const s of samples) if (s.answer !== null) counts.set(s.answer, (counts.get(s.answer) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1]).map(([answer, count]) => ({ answer, count }));
}

/** K whole solutions from the server: one prompt asked for n = K choices (greedy at temperature 0). */
async function sampleOnServer(
  model: RemoteModel,
  problem: string,
  prompt: number[],
  numSamples: number,
  maxTokens: number,
  temperature: number,
): Promise<SampleReport> {
  const { text, client } = model;
  const started = performance.now();
  const r = await client.completeLines({
    prompts: Array.from({ length: numSamples }, () => prompt),
    maxTokens,
    temperature,
    stop: [],
    eosTokenIds: text.eosTokenIds,
  });
  const ms = performance.now() - started;
  const samples = r.lines.map((c) => {
    const tokens = text.lineTokens(c);
    return sampleOf(text.decode(tokens), c.finish === "length" ? "length" : "eos", tokens.length);
  });
  const generated = samples.reduce((a, s) => a + s.tokens, 0);
  return {
    problem,
    model: text.folder?.dir ?? text.name,
    ...(!text.folder && { formattedByServer: true }),
    device: "server",
    server: model.server,
    samples,
    answers: answerCounts(samples),
    timing: {
      prefillMs: 0,
      decodeMs: round(ms),
      tokensPerSecond: Math.round(generated / Math.max(ms / 1000, 1e-9)),
      promptTokens: prompt.length,
      generatedTokens: generated,
      requests: r.requests,
    },
  };
}

function formatReport(r: SampleReport): string {
  const lines = [
    `Problem: ${escapeControl(r.problem).split("\n").join("\n         ")}`,
    r.server
      ? `Model:   ${r.server}, ${r.formattedByServer ? "prompt formatted by the server" : `tokenizer ${r.model}`}`
      : `Model:   ${r.model} (${r.modelFile}) on ${r.device}`,
    "",
  ];
  r.samples.forEach((s, i) => {
    lines.push(`#${i + 1}  answer ${s.answer ?? "(none)"}${s.finishReason === "length" ? "  [cut at max tokens]" : ""}`);
    for (const l of escapeControl(s.text).split("\n")) lines.push(`    ${l}`);
  });
  const total = r.samples.length;
  lines.push("", "Answers: " + (r.answers.map((a) => `${a.answer} (${a.count}/${total})`).join(", ") || "none"));
  if (r.server)
    lines.push(
      `Timing:  ${r.timing.decodeMs} ms in ${r.timing.requests} request(s), ${r.timing.generatedTokens} tokens, ${r.timing.tokensPerSecond} tokens/s`,
    );
  else
    lines.push(
      `Timing:  prefill ${r.timing.prefillMs} ms (${r.timing.promptTokens} tokens), decode ${r.timing.decodeMs} ms, ` +
        `${r.timing.generatedTokens} tokens, ${r.timing.tokensPerSecond} tokens/s`,
    );
  return lines.join("\n");
}
