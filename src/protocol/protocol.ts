/**
 * Every message between the extension host and the engine process, declared once and typed; both sides
 * import this module. The transport is JSON-RPC (vscode-languageclient ↔ vscode-languageserver);
 * cancelling a request uses the standard `$/cancelRequest`.
 */
import { NotificationType, RequestType, RequestType0 } from "vscode-jsonrpc";
import type { AnswerProbability, SmcRecord, SmcStepRecord, SolvedParticle, WireLogWeight } from "./record";

export type { AnswerProbability, SmcRecord, SmcStepRecord, SolvedParticle, WireLogWeight };

/** Twist and resample per token (Zhao et al.) or per reasoning line (Feng et al.). */
export const LEVELS = ["token", "step"] as const;
export type Level = (typeof LEVELS)[number];
export const RESAMPLING_SCHEMES = ["multinomial", "stratified", "systematic", "residual"] as const;
export type Resampling = (typeof RESAMPLING_SCHEMES)[number];
/** Where the model runs; `auto` picks the most capable one that works. */
export const DEVICES = ["auto", "cpu", "webgpu", "cuda"] as const;
export type DeviceRequest = (typeof DEVICES)[number];

/** The precisions a model folder's ONNX files come in (transformers.js's names: onnx/model_q4.onnx …). */
export const MODEL_DTYPES = ["fp32", "fp16", "q4", "q4f16", "int8", "uint8", "quantized", "bnb4"] as const;
/** Which of the folder's ONNX files to load: `auto` follows the device's order (lm/model/modelFolder.ts). */
export const MODEL_VARIANTS = ["auto", ...MODEL_DTYPES] as const;
export type ModelVariant = (typeof MODEL_VARIANTS)[number];

/** Where the model runs: here (onnxruntime), or on an OpenAI-compatible inference server. */
export const BACKENDS = ["local", "openai"] as const;
export type Backend = (typeof BACKENDS)[number];

/**
 * The inference server of the `openai` backend (twistedSmc.server.*). The API key is not here: the
 * editor hands it to the engine process as OPENAI_API_KEY (from its secret storage), so it is in no
 * message, record or log.
 */
export interface ServerSettings {
  /** The base URL, e.g. http://127.0.0.1:8080 or https://host/v1. */
  url: string;
  /** The served model's name (vLLM and SGLang check it); "" to leave it out. */
  model: string;
}

/** What the engine needs to run a model; a change of any of these but systemPrompt reloads it. */
export interface ModelSettings {
  /**
   * Model folder; empty for the shipped model. With a server, only its tokenizer files are read, and
   * empty means the server formats the prompt with its own chat template and tokenizer.
   */
  model: string;
  /** Twist file, "" for the model folder's own twist (if any), or "none". */
  twist: string;
  device: DeviceRequest;
  /** The ONNX file's precision (twistedSmc.modelVariant); unset: auto. */
  variant?: ModelVariant;
  /**
   * The prompt's system message (twistedSmc.systemPrompt), for a model with a chat template; unset or
   * empty: none. Per request: the engine's model cache does not key on it, a change reloads nothing.
   */
  systemPrompt?: string;
  /** Unset: local. */
  backend?: Backend;
  /** Required with the openai backend. */
  server?: ServerSettings;
}

export interface SmcSettings {
  particles: number;
  level: Level;
  resampling: Resampling;
  essThreshold: number;
  maxTokens: number;
  temperature: number;
  seed: number;
}

export interface SolveParams {
  /** Chosen by the client; step notifications carry it. */
  runId: string;
  problem: string;
  model: ModelSettings;
  smc: SmcSettings;
}

/** How sure a run is of its answer, in words every view shows as it is (see engine/smc/confidence.ts). */
export interface AnswerConfidence {
  /** clear: posterior ≥ 50%; uncertain: below; tie: several answers share the top; none: no answer. */
  kind: "clear" | "uncertain" | "tie" | "none";
  /** One line, e.g. "806, 886 or 786 — tied at 25.0% each". */
  summary: string;
  /** The answers sharing the top place, when kind is tie. */
  tied?: string[];
  /** Set when the problem is outside what the model was trained on: one line saying so. */
  outOfDepth?: string;
}

export interface SolveResultMessage {
  runId: string;
  problem: string;
  answer: string | null;
  probability: number;
  posterior: AnswerProbability[];
  confidence: AnswerConfidence;
  unanswered: number;
  logZ: number | null;
  ess: number[];
  resampledAt: number[];
  particles: SolvedParticle[];
  steps: number;
  level: Level;
  twist: string | null;
  model: string;
  /** A device (cpu, webgpu…), or "server" for the openai backend. */
  device: string;
  /** The inference server's URL (no credentials) and served model, for the openai backend. */
  server?: string;
  /** Set when the server's own chat template and tokenizer made the prompt (no tokenizer files were given). */
  formattedByServer?: boolean;
  timing: { totalMs: number; forwardPasses: number; requests?: number; generatedTokens: number; tokensPerSecond: number };
  collapsed?: string;
  /** Things the user should know about this run, one line each (a capped token budget, say). */
  warnings?: string[];
  record: SmcRecord;
}

export interface StepParams {
  runId: string;
  step: SmcStepRecord;
}

export interface EngineStatus {
  version: string;
  /** Loaded model, or null before the first request. */
  model: string | null;
  /** The loaded ONNX file, relative to the model folder (onnx/model_q4.onnx, say). */
  modelFile?: string | null;
  device: string | null;
  deviceChoice: string | null;
  /** The inference server (URL and served model) when the loaded model is remote, else null. */
  server?: string | null;
  twist: string | null;
  busy: boolean;
  pid: number;
  /** Requests this engine has received since it started, this one included. */
  requests: number;
}

export const Methods = {
  solve: new RequestType<SolveParams, SolveResultMessage, void>("twistedSmc/solve"),
  step: new NotificationType<StepParams>("twistedSmc/step"),
  status: new RequestType0<EngineStatus, void>("twistedSmc/status"),
} as const;

/** Error codes the engine uses in JSON-RPC error responses. */
export const ErrorCodes = {
  /** Bad input: a model folder, twist file, data set or parameter the user can fix. */
  inputError: -32001,
  /** The inference server (openai backend) could not be used: its URL and what it answered. */
  serverError: -32002,
  cancelled: -32800,
} as const;
