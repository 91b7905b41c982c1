/**
 * The graph a decoder runs and the onnxruntime session that runs it: the SMC-ready copy of the
 * export (prepareGraph.ts), and the session options each device needs.
 */
import { closeSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { dirname } from "node:path";
import * as ort from "onnxruntime-node";
import { Device, executionProvider, SESSION_CONFIG } from "./device";
import { ModelFolder, ModelFolderError, slidingWindowLayers } from "../model/modelFolder";
import { DiskFullError } from "../../util/errors";
import { cacheDirFromEnv, WebGpuValidation } from "../../environment";
import { externalDataHome, withExternalDataLocations } from "../onnx/externalData";
import { anyFused, HIDDEN_OUTPUT, PreparedEdits, prepareForSmc, prepareModelBytes, PrepareOptions } from "../onnx/prepareGraph";
import { DrawLayout } from "../onnx/samplingHead";

/** The model files already warned about running unprepared (once per process each). */
const warnedUnprepared = new Set<string>();

/** The ops of a quantized export; the LM head search passes through MatMulNBits, MatMulInteger and DequantizeLinear (headSearch.ts, findHeadInput). */
const QUANTIZED_OPS = /MatMulNBits|MatMulInteger|DynamicQuantizeLinear|QLinearMatMul|MatMulBnb4|DequantizeLinear/;

/**
 * The one warning line for an export that runs as it is, without the SMC-ready edits: what it costs.
 * `error` is the head search's: where it stopped (an op it does not know, MatMulBnb4 say) goes in the line.
 */
function warnUnprepared(folder: ModelFolder, error: Error): void {
  if (warnedUnprepared.has(folder.onnxPath)) return;
  warnedUnprepared.add(folder.onnxPath);
  // The nodes come before the weights in an ONNX file: its first 64 MiB name the ops.
  const head = Buffer.alloc(Math.min(statSync(folder.onnxPath).size, 64 << 20));
  const fd = openSync(folder.onnxPath, "r");
  try {
    readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  const quantized = QUANTIZED_OPS.test(head.toString("latin1"));
  const stopped = /the search stopped at ([^)]*)/.exec(error.message)?.[1];
  console.warn(
    `twisted-smc: warning: ${folder.onnxFile} runs unprepared (${quantized ? "a quantized graph: " : ""}its LM head was not found` +
      `${stopped ? `; the search stopped at ${stopped}` : ""}): ` +
      "twists that read the hidden state cannot run on it, and tokens are drawn outside the graph (slower sampling)",
  );
}

/**
 * The export as it is: its path, or, where its external data files are links out of its folder (the
 * Hugging Face cache's snapshots link into blobs/), its bytes with the locations onnxruntime accepts
 * (externalDataHome). A graph over 512 MiB holds its weights and is loaded by path.
 */
function asExported(folder: ModelFolder): { source: string | Uint8Array; externalDataDir?: string } {
  if (statSync(folder.onnxPath).size > 512 << 20) return { source: folder.onnxPath };
  const bytes = readFileSync(folder.onnxPath);
  const home = externalDataHome(bytes, dirname(folder.onnxPath));
  if (!home?.rename) return { source: folder.onnxPath };
  return { source: withExternalDataLocations(bytes, home.rename), externalDataDir: home.dir };
}

/**
 * The SMC-ready graph (see prepareGraph): a file in the cache folder (never the model's own), or, where
 * the cache cannot be written, the edited bytes in memory; with external data, the folder onnxruntime
 * must read it from. An export whose LM head cannot be found is used as it is, with a warning.
 */
export function smcReadySource(
  folder: ModelFolder,
  sampler: boolean,
  fuse: boolean,
  fixedCapacity: boolean,
  packStep = true,
  /** For the CPU (PrepareOptions.int8Compute). */
  int8Compute = false,
  /** PrepareOptions.drawLayout. */
  drawLayout?: DrawLayout,
): {
  source: string | Uint8Array;
  /** Where the graph's external data files are, when the graph is not loaded from beside them. */
  externalDataDir?: string;
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
    int8Compute,
    drawLayout,
    fuse: fuse
      ? { numHeads, numKvHeads, headDim, maxPositions, fixedCapacity, windows: slidingWindowLayers(folder), unpackedStep: !packStep }
      : undefined,
  };
  const edits = (p?: PreparedEdits) => ({
    fused: !!p && anyFused(p),
    attention: !!p?.fusedAttention || !!p?.adoptedAttention,
    rotaryPositions: p?.rotaryPositions ?? 0,
    fixedCapacity: !!p?.fixedCapacity,
    packedStep: p?.packedStep ? p.packedStep.split(",") : [],
  });
  try {
    const prepared = prepareForSmc(folder.onnxPath, options);
    if (prepared.path === folder.onnxPath) return { ...asExported(folder), ...edits(prepared) };
    return { source: prepared.path, externalDataDir: prepared.externalDataDir, ...edits(prepared) };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // A full disk is no fault of the model: run the edited graph from memory and say why it is not cached.
    if (e instanceof DiskFullError)
      console.warn(`twisted-smc: warning: not caching the prepared graph (${e.message}); it runs from memory this time`);
    else if (code === "EACCES" || code === "EROFS" || code === "EPERM")
      console.warn(
        `twisted-smc: warning: cannot write the cache folder ${(e as NodeJS.ErrnoException).path ?? cacheDirFromEnv()} (${code}; ` +
          "TWISTED_SMC_CACHE_DIR sets it): the prepared graph runs from memory this time",
      );
    if (code === "EACCES" || code === "EROFS" || code === "EPERM" || e instanceof DiskFullError) {
      const original = readFileSync(folder.onnxPath);
      let prepared: ReturnType<typeof prepareModelBytes>;
      try {
        prepared = prepareModelBytes(original, options);
      } catch (inner) {
        if (!/cannot find the LM head/.test((inner as Error).message)) throw inner;
        warnUnprepared(folder, inner as Error);
        return { ...asExported(folder), ...edits() };
      }
      if (!prepared) return { ...asExported(folder), ...edits() };
      const home = externalDataHome(original, dirname(folder.onnxPath));
      const bytes = home?.rename ? withExternalDataLocations(prepared.bytes, home.rename) : prepared.bytes;
      return { source: bytes, ...(home ? { externalDataDir: home.dir } : {}), ...edits(prepared) };
    }
    if (/cannot find the LM head/.test((e as Error).message)) {
      warnUnprepared(folder, e as Error);
      return { ...asExported(folder), ...edits() };
    }
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
  /**
   * The folder of the graph's external data files when the graph is not beside them (a prepared copy
   * in the cache, or bytes): onnxruntime (1.30) refuses absolute locations and links out of a model's
   * folder, and resolves a graph in memory against the working folder, so the graph goes in as bytes
   * with session.model_external_initializers_file_folder_path set to this folder.
   */
  externalDataDir?: string;
}

/**
 * Opens a session of `source` on `device`, each call a new one (the decoder reopens it to free what
 * onnxruntime kept: fixedCapacity.ts).
 */
export function sessionOpener(source: string | Uint8Array, device: Device, settings: SessionSettings): () => Promise<ort.InferenceSession> {
  const { threads, numLayers, fixedCapacity, ortProfile, webgpuValidation, externalDataDir } = settings;
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    // A fixed-capacity cache's tensors are remade every step at the same sizes: the exact-size
    // buffer cache reuses them all (the default keeps 10 of a size; see fuseAttention.ts).
    executionProviders: [executionProvider(device, undefined, fixedCapacity ? "simple" : undefined, webgpuValidation)],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
    // Errors only: onnxruntime's warnings (e.g. shape ops placed on the CPU by design) are not the user's to act on.
    logSeverityLevel: 3,
    extra: { session: { ...SESSION_CONFIG } },
  };
  // A diagnostic: onnxruntime's own trace of every kernel (chrome://tracing JSON), written on dispose.
  if (ortProfile) Object.assign(sessionOptions, { enableProfiling: true, profileFilePrefix: ortProfile });
  if (externalDataDir) {
    sessionOptions.extra = { session: { ...SESSION_CONFIG, model_external_initializers_file_folder_path: externalDataDir } };
    // The graph (small: its weights are in the data files) goes in as bytes, read now.
  }
  const input = externalDataDir && typeof source === "string" ? readFileSync(source) : source;
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
    typeof input === "string" ? ort.InferenceSession.create(input, sessionOptions) : ort.InferenceSession.create(input, sessionOptions);
}
