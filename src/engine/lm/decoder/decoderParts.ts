/**
 * What an OnnxDecoder is made of and how it is opened on one device: the options a caller gives, the
 * graph prepared for that device and its session, the checks of its interface and (on a GPU) of its
 * fused attention, and the small sessions that run beside it. onnxDecoder.ts runs the parts.
 */
import * as ort from "onnxruntime-node";
import { fixedCapacityDefault, cacheBudgetFor } from "./fixedCapacity";
import { Device, DeviceAttempt, DeviceRequest, deviceFailure } from "./device";
import { FloatType } from "./kvCache";
import { fixedCapacityCarriesAttention, DecoderConfig, ModelFolder, ModelFolderError } from "../model/modelFolder";
import { checkInterface } from "./decoderInterface";
import { WebGpuValidation } from "../../environment";
import { sessionOpener, smcReadySource } from "./decoderSession";
import { CHUNKS, largestRightChunk } from "./attentionCheck";
import { DTYPE } from "../onnx/graphBuild";
import { DrawLayout } from "../onnx/samplingHead";
import { KvReorder } from "./kvReorder";
import { LogitSessions } from "./logitSessions";

export interface OnnxDecoderOptions {
  /** Intra-op threads; defaults to the machine's parallelism. */
  threads?: number;
  /** Where to run; `auto` picks the most capable available and falls back to the CPU. Default cpu. */
  device?: DeviceRequest;
  /** Load the SMC-ready copy of the graph (default true); false loads the export as it is. */
  prepare?: boolean;
  /**
   * Draw tokens inside the graph (a sampling head in the prepared copy). Default: on a GPU, and on
   * the CPU for vocabularies of LARGE_VOCABULARY tokens or more, where the head's passes cost less than
   * scanning K × vocab logits in JavaScript (README, Performance); small vocabularies gain nothing.
   */
  sampleInGraph?: boolean;
  /**
   * Run the graph in the fewest kernels: its layers fused and its draws laid out for it (prepareGraph's
   * `fuse`). Default: on a GPU, where a step's time is mostly kernel launches.
   */
  fewestKernels?: boolean;
  /** Devices already given up on before this load (a GPU that failed mid-run), reported with the choice. */
  priorAttempts?: readonly DeviceAttempt[];
  /**
   * Keep the KV cache at a fixed capacity, in the fewest kernels (fuseAttention.ts): its tensors keep
   * their shape from step to step, growing by `capacityStep` positions (default 256) when full, and on
   * a GPU onnxruntime reuses their buffers (its exact-size buffer cache, which is then the whole
   * process's). Default: on a GPU (fixedCapacityDefault), unless TWISTED_SMC_FIXED_CAPACITY says otherwise
   * (environment.ts, fixedCapacityFromEnv); a graph it cannot apply to runs as without it. A graph with
   * its own GroupQueryAttention keeps a fixed capacity whatever this says (adoptGroupQueryAttention.ts).
   */
  fixedCapacity?: boolean;
  capacityStep?: number;
  /**
   * In the fewest kernels: feed the graph's small per-pass inputs packed in one (packStepInputs.ts),
   * one upload a pass instead of four or five. Default true; false keeps them apart (to time the difference).
   */
  packStep?: boolean;
  /**
   * On the CPU, 4-bit MatMulNBits that name no accuracy level compute in int8 (PrepareOptions.int8Compute;
   * faster). Default true; false computes them as a GPU does, in the activations' precision (to compare the two).
   */
  int8Compute?: boolean;
  /**
   * With a fixed capacity: the most bytes of cache tensors of distinct shapes (batch × capacity) the
   * runtime may keep. onnxruntime's exact-size buffer cache never frees a buffer, so past this a prompt
   * into an empty cache, when no state or output of any decoder is alive, first reopens this decoder's
   * sessions, which frees them. Default: fixedCapacity.ts, cacheBudgetFor (on a GPU, TWISTED_SMC_CACHE_BUDGET_MB).
   */
  cacheBudget?: number;
  /**
   * The most prompt tokens one forward pass takes (a longer prompt goes in chunks). Default: no limit,
   * PREFILL_CHUNK with a fixed capacity, and less where a GPU's attention is wrong on longer chunks
   * (attentionCheck.ts).
   */
  prefillChunk?: number;
  /**
   * On WebGPU, onnxruntime's validation mode for this decoder's sessions (device.ts, executionProvider):
   * validating each dispatch costs CPU time per kernel; `disabled` crashes on a GPU error. Default:
   * TWISTED_SMC_WEBGPU_VALIDATION's, else onnxruntime's (`basic`).
   */
  webgpuValidation?: WebGpuValidation;
  /**
   * A diagnostic: the file prefix onnxruntime writes its trace of every kernel of the decoder's session
   * to (chrome://tracing JSON, `PREFIX_<date>.json`), on dispose. Default: TWISTED_SMC_ORT_PROFILE's; none.
   */
  ortProfile?: string;
}

/**
 * The most prompt tokens a fixed-capacity cache's prefill runs at once: onnxruntime's exact-size
 * buffer cache keeps a buffer of every size it was asked for, and chunks bound those sizes.
 */
export const PREFILL_CHUNK = 64;

/** From this vocabulary size on, drawing in the graph pays on the CPU too. */
export const LARGE_VOCABULARY = 8192;

/**
 * Everything an OnnxDecoder is made of, as OnnxDecoder.load puts it together for one device: the
 * session, what the graph takes and gives, the sessions beside it, and the choices made for the cache.
 */
export interface DecoderParts {
  /** The decoder graph's session (reopened by `reopen` to free what onnxruntime kept). */
  session: ort.InferenceSession;
  /** The model's shape, from its config.json. */
  config: DecoderConfig;
  /** The KV cache's element type, as the graph declares its past_key_values inputs. */
  kvType: FloatType;
  /** Whether the graph takes position_ids. */
  hasPositionIds: boolean;
  /** Whether the graph outputs the hidden state the twists read (HIDDEN_OUTPUT). */
  hasHidden: boolean;
  /** Whether the graph draws tokens itself (a sampling head: OnnxDecoderOptions.sampleInGraph). */
  samplesInGraph: boolean;
  /** The token fed to held rows and the probe (config's pad_token_id, else 0). */
  padId: number;
  /** The device line: the device and, in parentheses, notes on how it runs (threads, cache, chunking). */
  device: string;
  /** Every device tried, with the reason each unused one was skipped. */
  deviceAttempts: readonly DeviceAttempt[];
  /** Reads rows of the logits, and draws from them, where they are (on a GPU: left on the device). */
  logitSessions: LogitSessions;
  /** Gathers the cache's rows where it is, for a step whose rows changed. */
  kvReorder: KvReorder;
  /** Positions the graph's rotary tables cover (fuseRotary.ts); 0: it computes any position's angles. */
  rotaryPositions: number;
  /** With a fixed-capacity cache (fuseAttention.ts): the positions it grows by when full; 0 without. */
  capacityStep: number;
  /** The most prompt tokens one pass takes (OnnxDecoderOptions.prefillChunk); Infinity: no limit. */
  prefillChunk: number;
  /** A new session of the same graph and options (for freeRetained); none: the session is never reopened. */
  reopen?: () => Promise<ort.InferenceSession>;
  /** OnnxDecoderOptions.cacheBudget, in bytes; Infinity: no budget. */
  cacheBudget: number;
  /** The inputs the graph takes packed in one (packStepInputs.ts), in packing order; empty: one by one. */
  packedStep: readonly string[];
  /** Whether the session writes onnxruntime's trace (OnnxDecoderOptions.ortProfile): ended on dispose. */
  profiling: boolean;
}

/** Why a device could not run the model, and whether the graph it tried had fused layers. */
export interface DeviceFailure {
  failure: string;
  fused: boolean;
}

/**
 * The parts of a decoder on one device, or why that device could not run it (and whether the graph
 * tried had fused layers). A model the CPU cannot load is the folder's fault: that throws. The caller
 * makes the decoder from the parts and, on a GPU, probes it (OnnxDecoder.load).
 */
export async function openOnDevice(
  folder: ModelFolder,
  options: OnnxDecoderOptions,
  device: Device,
  threads: number,
  sampler: boolean,
  fuse: boolean,
  attempts: DeviceAttempt[],
): Promise<{ parts: DecoderParts; fused: boolean } | DeviceFailure> {
  // The GPU's layout of the inverse CDF (fewer, larger kernels) costs the CPU more work: a windowed
  // model fused on the CPU (onnxDecoder.ts) took 17–31% longer a token-level step with it (Gemma-3 widths).
  const drawLayout: DrawLayout = fuse && device !== "cpu" ? "fewest-kernels" : "least-work";
  const { source, externalDataDir, fused, attention, rotaryPositions, fixedCapacity, packedStep } =
    options.prepare === false
      ? { source: folder.onnxPath, fused: false, attention: false, rotaryPositions: 0, fixedCapacity: false, packedStep: [] }
      : smcReadySource(
          folder,
          sampler,
          fuse,
          fuse && (options.fixedCapacity ?? fixedCapacityDefault(device)) && fixedCapacityCarriesAttention(folder),
          options.packStep ?? true,
          device === "cpu" && options.int8Compute !== false,
          drawLayout,
        );
  const capacityStep = fixedCapacity ? (options.capacityStep ?? 256) : 0;
  if (fixedCapacity && !(Number.isInteger(capacityStep) && capacityStep > 0))
    throw new RangeError(`capacityStep must be a positive integer, got ${options.capacityStep}`);
  const cacheBudget = cacheBudgetFor(device, options.cacheBudget);
  // On WebGPU the KV cache stays on the device (decoderSession.ts): reordering it needs the prepared graph.
  if (device === "webgpu" && options.prepare === false) {
    return { failure: "on a GPU the engine runs the SMC-prepared graph (it draws the tokens there)", fused };
  }
  let session: ort.InferenceSession | undefined;
  let reopen: (() => Promise<ort.InferenceSession>) | undefined;
  try {
    reopen = sessionOpener(source, device, {
      threads,
      numLayers: folder.config.numLayers,
      fixedCapacity,
      ortProfile: options.ortProfile,
      webgpuValidation: options.webgpuValidation,
      externalDataDir,
    });
    session = await reopen();
  } catch (e) {
    await session?.release();
    const message = (e as Error).message;
    if (device !== "cpu" && !/protobuf|parse|invalid model|load model/i.test(message))
      return { failure: deviceFailure(device, message), fused };
    throw new ModelFolderError(`${folder.onnxPath} could not be loaded by onnxruntime: ${message}`);
  }
  const chosen = [...attempts, { device }];
  const { kvType, hasPositionIds, hasHidden, hasSampler } = checkInterface(session, folder, fixedCapacity, packedStep);
  let prefillChunk = options.prefillChunk ?? (fixedCapacity ? PREFILL_CHUNK : Infinity);
  if (!(prefillChunk >= 1)) throw new RangeError(`prefillChunk must be at least 1, got ${options.prefillChunk}`);
  // What the device line tells the user beside the device: how the cache is kept, and any chunking.
  const notes = [
    device === "cpu" ? `onnxruntime-node, ${threads} thread${threads === 1 ? "" : "s"}` : "onnxruntime-node",
    ...(fixedCapacity ? ["fixed-capacity KV cache"] : []),
  ];
  if (device !== "cpu" && attention) {
    // A GPU whose fused attention is wrong on long chunks (small subgroups) gets the prompt in shorter ones.
    try {
      const right = await largestRightChunk(
        device,
        fixedCapacity ? "gqa" : "mha",
        folder.config.numHeads,
        folder.config.headDim,
        options.webgpuValidation,
      );
      if (right < CHUNKS[0] && right < prefillChunk) {
        prefillChunk = right;
        notes.push(`prompts in ${right}-token passes, as this GPU's attention is wrong on longer ones`);
      }
    } catch (e) {
      await session.release();
      return { failure: `it could not run the fused attention: ${deviceFailure(device, (e as Error).message)}`, fused };
    }
  }
  const where = `${device} (${notes.join("; ")})`;
  const logits = session.outputMetadata.find((m) => m.name === "logits");
  const logitsType = logits?.isTensor && logits.type === "float16" ? DTYPE.float16 : DTYPE.float;
  const logitSessions = new LogitSessions(
    device,
    threads,
    logitsType,
    folder.config.vocabSize,
    folder.config.hiddenSize,
    where,
    drawLayout,
    options.webgpuValidation,
  );
  const kvReorder = new KvReorder(
    device,
    threads,
    2 * folder.config.numLayers,
    kvType === "float16" ? DTYPE.float16 : DTYPE.float,
    where,
    options.webgpuValidation,
  );
  return {
    parts: {
      session,
      config: folder.config,
      kvType,
      hasPositionIds,
      hasHidden,
      samplesInGraph: hasSampler,
      padId: folder.config.padTokenId ?? 0,
      device: where,
      deviceAttempts: chosen,
      logitSessions,
      kvReorder,
      rotaryPositions,
      capacityStep,
      prefillChunk,
      reopen,
      cacheBudget,
      packedStep,
      profiling: !!options.ortProfile,
    },
    fused,
  };
}
