/**
 * The graph a decoder runs and the onnxruntime session that runs it: the SMC-ready copy of the
 * export (prepareGraph.ts), and the session options each device needs.
 */
import { readFileSync } from "node:fs";
import * as ort from "onnxruntime-node";
import { Device, executionProvider } from "./device";
import { ModelFolder, ModelFolderError } from "../model/modelFolder";
import { DiskFullError } from "../../util/errors";
import { WebGpuValidation } from "../../environment";
import { anyFused, HIDDEN_OUTPUT, PreparedEdits, prepareForSmc, prepareModelBytes, PrepareOptions } from "../onnx/prepareGraph";

/**
 * The SMC-ready graph (see prepareGraph): a cached file next to the export, or, where that folder is
 * read-only, the edited bytes in memory. An export whose LM head cannot be found is used as it is.
 */
export function smcReadySource(
  folder: ModelFolder,
  sampler: boolean,
  fuse: boolean,
  fixedCapacity: boolean,
  packStep = true,
): {
  source: string | Uint8Array;
  fused: boolean;
  attention: boolean;
  rotaryPositions: number;
  fixedCapacity: boolean;
  packedStep: string[];
} {
  const { hiddenSize, vocabSize, numHeads, numKvHeads, headDim, maxPositions } = folder.config;
  const options: PrepareOptions = {
    hiddenSize,
    vocabSize,
    sampler,
    fuse: fuse ? { numHeads, numKvHeads, headDim, maxPositions, fixedCapacity, unpackedStep: !packStep } : undefined,
  };
  const edits = (p?: PreparedEdits) => ({
    fused: !!p && anyFused(p),
    attention: !!p?.fusedAttention,
    rotaryPositions: p?.rotaryPositions ?? 0,
    fixedCapacity: !!p?.fixedCapacity,
    packedStep: p?.packedStep ? p.packedStep.split(",") : [],
  });
  try {
    const prepared = prepareForSmc(folder.onnxPath, options);
    return { source: prepared.path, ...edits(prepared) };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // A full disk is no fault of the model: run the edited graph from memory and say why it is not cached.
    if (e instanceof DiskFullError)
      console.warn(`twisted-smc: warning: not caching the prepared graph (${e.message}); it runs from memory this time`);
    if (code === "EACCES" || code === "EROFS" || code === "EPERM" || e instanceof DiskFullError) {
      const prepared = prepareModelBytes(readFileSync(folder.onnxPath), options);
      return { source: prepared?.bytes ?? folder.onnxPath, ...edits(prepared) };
    }
    if (/cannot find the LM head/.test((e as Error).message)) return { source: folder.onnxPath, ...edits() };
    throw new ModelFolderError(
      `${folder.onnxPath} is not a valid ONNX model (${(e as Error).message}): the file may be truncated or corrupt`,
    );
  }
}

/** How a decoder's session is opened (sessionOpener). */
export interface SessionSettings {
  /** Intra-op threads. */
  threads: number;
  /** The model's layers (each has a present key and value output). */
  numLayers: number;
  /** Whether the graph keeps a fixed-capacity cache (fuseAttention.ts). */
  fixedCapacity: boolean;
  /** OnnxDecoderOptions.ortProfile: where onnxruntime writes its trace of every kernel; unset: none. */
  ortProfile?: string;
  /** OnnxDecoderOptions.webgpuValidation; unset: TWISTED_SMC_WEBGPU_VALIDATION's. */
  webgpuValidation?: WebGpuValidation;
}

/**
 * Opens a session of `source` on `device`, each call a new one (the decoder reopens it to free what
 * onnxruntime kept: fixedCapacity.ts).
 */
export function sessionOpener(source: string | Uint8Array, device: Device, settings: SessionSettings): () => Promise<ort.InferenceSession> {
  const { threads, numLayers, fixedCapacity, ortProfile, webgpuValidation } = settings;
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    // A fixed-capacity cache's tensors are remade every step at the same sizes: the exact-size
    // buffer cache reuses them all (the default keeps 10 of a size; see fuseAttention.ts).
    executionProviders: [executionProvider(device, undefined, fixedCapacity ? "simple" : undefined, webgpuValidation)],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    // Errors only: onnxruntime's warnings (e.g. shape ops placed on the CPU by design) are not the user's to act on.
    logSeverityLevel: 3,
  };
  // A diagnostic: onnxruntime's own trace of every kernel (chrome://tracing JSON), written on dispose.
  if (ortProfile) Object.assign(sessionOptions, { enableProfiling: true, profileFilePrefix: ortProfile });
  if (device === "webgpu") {
    // On WebGPU the KV cache stays on the device: present.* outputs are GPU buffers fed straight back
    // (with the cache round-tripping through the CPU each step was 20× slower; see GPU.md). The
    // logits and hidden state stay there too, until a draw outside the graph needs them (stepReaders.ts).
    const onDevice = [
      "logits",
      HIDDEN_OUTPUT,
      ...Array.from({ length: numLayers }, (_, i) => [`present.${i}.key`, `present.${i}.value`]).flat(),
    ];
    sessionOptions.preferredOutputLocation = Object.fromEntries(onDevice.map((n) => [n, "gpu-buffer" as const]));
  }
  return () =>
    typeof source === "string" ? ort.InferenceSession.create(source, sessionOptions) : ort.InferenceSession.create(source, sessionOptions);
}
