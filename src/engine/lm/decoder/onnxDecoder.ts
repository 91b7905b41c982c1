/**
 * A CausalLM over an ONNX decoder with the Optimum / transformers.js interface (input_ids,
 * attention_mask, position_ids, past_key_values.{i}.key|value → logits, present.{i}.key|value, and
 * optionally last_hidden_state), run by onnxruntime-node. The KV cache stays in the runtime's tensors
 * and is reordered by row without recomputing anything.
 *
 * lm/decoder/ is this decoder and what it runs on:
 * - device.ts: which execution provider runs it (auto's choice, and why the others were not taken);
 *   attentionCheck.ts: how long a prompt chunk a GPU's fused attention gets right;
 * - decoderParts.ts: what it is made of, and opening those parts on one device;
 * - decoderSession.ts: the graph it runs (the SMC-ready copy) and its session's options;
 *   decoderInterface.ts: the inputs and outputs that graph must have; sideSessions.ts: sessions of the
 *   small graphs run beside it;
 * - kvCache.ts: the KV cache as the engine's DecoderState; kvReorder.ts: reordering it by row where it
 *   lives; passInputs.ts: what one forward pass feeds the graph; fixedCapacity.ts: a fixed-capacity
 *   cache's batch and the buffers onnxruntime keeps for it;
 * - stepReaders.ts, logitSessions.ts: a pass's logits and hidden state, read (and drawn from) where they
 *   are; tensorData.ts: output tensors as float32 rows.
 */
import { availableParallelism } from "node:os";
import * as ort from "onnxruntime-node";
import { CausalLM, DecoderState, GraphSampling, RowSamples, StepOutput } from "../causalLm";
import { candidates, DeviceAttempt, DeviceRunError, DeviceUnavailableError, describeDeviceChoice, deviceFailure, precheck } from "./device";
import { FloatType, KvCache, liveKvCaches } from "./kvCache";
import { liveDeviceLogits } from "./stepReaders";
import { DecoderConfig, ModelFolder, slidingWindowLayers } from "../model/modelFolder";
import { physicalBatch, RetainedCacheShapes } from "./fixedCapacity";
import { fixedCapacityFromEnv, ortProfileFromEnv } from "../../environment";
import { passInputs } from "./passInputs";
import { HIDDEN_OUTPUT } from "../onnx/prepareGraph";
import { DecoderParts, DeviceFailure, LARGE_VOCABULARY, OnnxDecoderOptions, openOnDevice } from "./decoderParts";

import { concat } from "../onnx/protoWire";
import { KvReorder } from "./kvReorder";
import { LogitSessions } from "./logitSessions";
import { SAMPLE_DRAWS, unpackDraws } from "../onnx/samplingHead";

export { LARGE_VOCABULARY, PREFILL_CHUNK } from "./decoderParts";
export type { DecoderParts, OnnxDecoderOptions } from "./decoderParts";

export class OnnxDecoder implements CausalLM {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly deviceChoice: string;
  readonly samplesInGraph: boolean;
  readonly device: string;
  /** Every device tried, with the reason each unused one was skipped. */
  readonly deviceAttempts: readonly DeviceAttempt[];
  private session: ort.InferenceSession;
  private readonly config: DecoderConfig;
  private readonly kvType: FloatType;
  private readonly hasPositionIds: boolean;
  private readonly hasHidden: boolean;
  private readonly padId: number;
  private readonly logitSessions: LogitSessions;
  private readonly kvReorder: KvReorder;
  private readonly rotaryPositions: number;
  private readonly capacityStep: number;
  private readonly prefillChunk: number;
  private readonly reopen?: () => Promise<ort.InferenceSession>;
  private readonly cacheBudget: number;
  private readonly packedStep: readonly string[];
  private readonly profiling: boolean;

  private constructor(parts: DecoderParts) {
    this.session = parts.session;
    this.config = parts.config;
    this.kvType = parts.kvType;
    this.hasPositionIds = parts.hasPositionIds;
    this.hasHidden = parts.hasHidden;
    this.samplesInGraph = parts.samplesInGraph;
    this.padId = parts.padId;
    this.device = parts.device;
    this.deviceAttempts = parts.deviceAttempts;
    this.logitSessions = parts.logitSessions;
    this.kvReorder = parts.kvReorder;
    this.rotaryPositions = parts.rotaryPositions;
    this.capacityStep = parts.capacityStep;
    this.prefillChunk = parts.prefillChunk;
    this.reopen = parts.reopen;
    this.cacheBudget = parts.cacheBudget;
    this.packedStep = parts.packedStep;
    this.profiling = parts.profiling;
    this.vocabSize = parts.config.vocabSize;
    this.hiddenSize = parts.config.hiddenSize;
    this.deviceChoice = describeDeviceChoice(parts.deviceAttempts);
  }

  /** Whether the KV cache is of fixed capacity (OnnxDecoderOptions.fixedCapacity, where the graph took it). */
  get fixedCapacity(): boolean {
    return this.capacityStep > 0;
  }

  /** The device alone, without the line's notes (deviceFailure's first argument). */
  private get deviceKind(): string {
    return this.device.split(" ")[0];
  }

  /** Bytes fetched from the device so far, logits and hidden states apart (0 on the CPU). */
  get readback(): { readonly logits: number; readonly hidden: number } {
    return this.logitSessions.fetched;
  }

  static async load(folder: ModelFolder, given: OnnxDecoderOptions = {}): Promise<OnnxDecoder> {
    const options = {
      ...given,
      fixedCapacity: given.fixedCapacity ?? fixedCapacityFromEnv(),
      ortProfile: given.ortProfile ?? ortProfileFromEnv(),
    };
    const threads = options.threads ?? Math.max(1, availableParallelism());
    // A sliding window in the export's mask counts a held row's masked slot as one of the row's tokens:
    // over the growing cache, a row longer than its window is computed wrongly after a held step. Such a
    // model runs fused over a fixed capacity, whose attention carries the window, on the CPU too.
    const windowed = !!slidingWindowLayers(folder);
    if (windowed && options.fixedCapacity === undefined) options.fixedCapacity = true;
    const attempts: DeviceAttempt[] = [...(options.priorAttempts ?? [])];
    const request = options.device ?? "cpu";
    for (const device of candidates(request)) {
      const reason = precheck(device, request);
      if (reason) {
        attempts.push({ device, skipped: reason });
        continue;
      }
      const sampler = options.sampleInGraph ?? (device !== "cpu" || folder.config.vocabSize >= LARGE_VOCABULARY);
      const fuse = options.fewestKernels ?? (device !== "cpu" || windowed);
      const fusedTry = await OnnxDecoder.onDevice(folder, options, device, threads, sampler, fuse, attempts);
      if (fusedTry instanceof OnnxDecoder) return fusedTry;
      // A GPU that fails on the fused layers gets the graph as exported before it is given up on.
      if (!fusedTry.fused || options.fewestKernels !== undefined) {
        attempts.push({ device, skipped: fusedTry.failure });
        continue;
      }
      attempts.push({ device, skipped: `${fusedTry.failure} (with its layers fused; the unfused graph was tried next)` });
      const plainTry = await OnnxDecoder.onDevice(folder, options, device, threads, sampler, false, attempts);
      if (plainTry instanceof OnnxDecoder) return plainTry;
      attempts.push({ device, skipped: plainTry.failure });
    }
    throw new DeviceUnavailableError(
      `no device could run the model: ${describeDeviceChoice(attempts)}${request === "auto" ? "" : "; try --device auto or cpu"}`,
    );
  }

  /**
   * The decoder on one device (openOnDevice), or why that device could not run it. Shaders compile and
   * buffers are made at a GPU's first run: one that cannot run this graph fails in the probe here, where
   * falling back costs nothing, rather than in the middle of a solve.
   */
  private static async onDevice(...args: Parameters<typeof openOnDevice>): Promise<OnnxDecoder | DeviceFailure> {
    const opened = await openOnDevice(...args);
    if ("failure" in opened) return opened;
    const decoder = new OnnxDecoder(opened.parts);
    const device = args[2];
    if (device === "cpu") return decoder;
    try {
      await decoder.probe();
      return decoder;
    } catch (e) {
      await decoder.dispose();
      return { failure: `it could not run the model: ${deviceFailure(device, (e as Error).message)}`, fused: opened.fused };
    }
  }

  async prefill(tokens: readonly number[], sampling?: GraphSampling): Promise<StepOutput> {
    if (!tokens.length) throw new Error("prefill needs at least one token");
    return this.prompt(tokens, false, sampling);
  }

  async step(state: DecoderState, tokens: readonly (number | null)[], sampling?: GraphSampling): Promise<StepOutput> {
    if (!(state instanceof KvCache)) throw new TypeError("OnnxDecoder.step needs a state made by this decoder");
    if (tokens.length !== state.batch) throw new RangeError(`step got ${tokens.length} tokens for a batch of ${state.batch}`);
    return this.run(
      state,
      tokens.map((t) => [t]),
      false,
      sampling,
    );
  }

  async encodeAll(tokens: readonly number[]): Promise<{ logits: Float32Array; hidden?: Float32Array }> {
    if (!tokens.length) throw new Error("encodeAll needs at least one token");
    const logits: Float32Array[] = [];
    const hidden: Float32Array[] = [];
    const collect = async (o: StepOutput) => {
      logits.push(await o.readLogits());
      if (o.readHidden) hidden.push((await o.readHidden([0]))[0]);
    };
    const out = await this.prompt(tokens, true, undefined, collect);
    out.state.dispose();
    try {
      await collect(out);
    } finally {
      out.release();
    }
    return { logits: concatFloats(logits), hidden: hidden.length ? concatFloats(hidden) : undefined };
  }

  /**
   * A prompt from an empty cache, in passes of at most prefillChunk tokens: a first of 1 to
   * prefillChunk, then whole ones (with a fixed capacity, so that prompts of any length make tensors
   * of a bounded set of sizes). `each` sees every pass's output but the last, which is returned.
   */
  private async prompt(
    tokens: readonly number[],
    allPositions: boolean,
    sampling?: GraphSampling,
    each?: (out: StepOutput) => Promise<void>,
  ): Promise<StepOutput> {
    await this.freeRetained();
    const size = this.prefillChunk;
    const first = tokens.length <= size ? tokens.length : tokens.length - size * Math.floor((tokens.length - 1) / size);
    let out = await this.run(this.emptyCache(1), [tokens.slice(0, first)], allPositions, first === tokens.length ? sampling : undefined);
    for (let at = first; at < tokens.length; at += size) {
      try {
        await each?.(out);
      } catch (e) {
        out.release();
        out.state.dispose();
        throw e;
      }
      out.release();
      out = await this.run(
        out.state as KvCache,
        [tokens.slice(at, at + size)],
        allPositions,
        at + size >= tokens.length ? sampling : undefined,
      );
    }
    return out;
  }

  /** Bytes of cache tensors of the distinct shapes this decoder's passes made (a fixed capacity's; see cacheBudget). */
  get retainedCacheBytes(): number {
    return this.shapesMade.bytes;
  }

  /** How often the decoder reopened its sessions to free what the runtime kept (cacheBudget). */
  get sessionReopens(): number {
    return this.reopens;
  }

  private readonly shapesMade = new RetainedCacheShapes();
  private reopens = 0;
  /** The session was released and could not be reopened (freeRetained): only dispose is left. */
  private sessionReleased = false;

  /** Past the cache budget, with nothing alive that the sessions' buffers hold, reopens them: that frees what the runtime kept. */
  private async freeRetained(): Promise<void> {
    if (!this.reopen || this.retainedCacheBytes <= this.cacheBudget || liveKvCaches() > 0 || liveDeviceLogits() > 0) return;
    await this.logitSessions.dispose();
    await this.kvReorder.dispose();
    await this.session.release();
    try {
      this.session = await this.reopen();
    } catch (e) {
      this.sessionReleased = true;
      throw DeviceRunError.failed(
        this.device,
        `failed to reopen the model to free its cache buffers: ${deviceFailure(this.deviceKind, (e as Error).message)}`,
      );
    }
    this.shapesMade.clear();
    this.reopens++;
  }

  async dispose(): Promise<void> {
    if (!this.sessionReleased) {
      if (this.profiling) this.session.endProfiling();
      await this.session.release();
    }
    await this.logitSessions.dispose();
    await this.kvReorder.dispose();
  }

  /** One small forward pass with a resampling gather: proves the device can run every part of the graph. */
  private async probe(): Promise<void> {
    const first = await this.run(this.emptyCache(1), [[this.padId, this.padId]]);
    first.release();
    const both = (first.state as KvCache).select([0, 0]);
    first.state.dispose();
    const second = await this.run(both, [[this.padId], [null]]);
    second.state.dispose();
    try {
      await second.readRows([1]);
      if (second.drawRows) await second.drawRows({ rows: [1, 1], uniforms: [0.2, 0.9], temperature: 1 });
      await second.readHidden?.([1]);
    } finally {
      second.release();
    }
  }

  private emptyCache(batch: number): KvCache {
    const c = this.config;
    const dims = [batch, c.numKvHeads, 0, c.headDim];
    const make = () => new ort.Tensor(this.kvType, this.kvType === "float32" ? new Float32Array(0) : new Uint16Array(0), dims);
    return KvCache.fromTensors(Array.from({ length: 2 * c.numLayers }, make), batch, 0, new Uint8Array(0), new Int32Array(batch));
  }

  /** One forward pass over `rows` (equal lengths; a null token holds its row with a masked position). */
  private async run(cache: KvCache, rows: (number | null)[][], allPositions = false, sampling?: GraphSampling): Promise<StepOutput> {
    const batch = rows.length;
    const seq = rows[0].length;
    // On a GPU a fixed-capacity cache runs a power-of-two batch, padded with held rows: onnxruntime's
    // exact-size buffer cache keeps a set of buffers for every batch it ran, and a batch shrinking row by
    // row as particles finish kept one per row count (lavapipe, K = 16, 12 layers: 1.9 → 6.1 GB). The
    // CPU's arena reuses freed blocks for any size (a shrinking batch left the process's memory as it
    // was), and there a padded row costs what a real one does (9 rows in 16's time: docs/real-layouts.md).
    const physical = this.capacityStep && !this.device.startsWith("cpu") ? physicalBatch(batch) : batch;
    const padded = physical > batch ? [...rows, ...Array.from({ length: physical - batch }, () => Array<null>(seq).fill(null))] : rows;
    let draw: { uniforms: Float32Array; inverseTemperature: number } | undefined;
    if (this.samplesInGraph) {
      if (sampling && sampling.uniforms.length !== batch)
        throw new RangeError(`sampling got ${sampling.uniforms.length} uniforms for a batch of ${batch}`);
      if (sampling && !(sampling.temperature > 0)) throw new RangeError(`sampling needs a temperature > 0, got ${sampling.temperature}`);
      // float32 rounds u just below 1 up to 1, which would select past the last token.
      const uniforms = new Float32Array(physical);
      for (let b = 0; b < batch && sampling; b++) uniforms[b] = Math.min(sampling.uniforms[b], 1 - 2 ** -24);
      draw = { uniforms, inverseTemperature: sampling ? 1 / sampling.temperature : 1 };
    }
    const { feeds, capacity, length, mask, positions } = passInputs(cache, padded, {
      padId: this.padId,
      capacityStep: this.capacityStep,
      positionIds: this.hasPositionIds,
      draw,
      packed: this.packedStep,
    });
    // Past its rotary tables the fused graph would read beyond them; the exported graph on the CPU
    // computes any position's angles (withCpuFallback moves the run there).
    const last = this.rotaryPositions ? positions.reduce((a, b) => Math.max(a, b), 0) : 0;
    if (last > this.rotaryPositions) {
      cache.dispose();
      throw new DeviceRunError(
        this.device,
        `position ${last - 1} is past the ${this.rotaryPositions} positions this graph's rotary tables cover on ${this.device}; the run goes on on the CPU`,
      );
    }
    let out: ort.InferenceSession.OnnxValueMapType;
    let reordered: ort.Tensor[] | undefined;
    try {
      // The stored rows, in order, padded: a gather unless they are the stored ones as they are.
      const stored = cache.storedRows();
      const inPlace = cache.storeBatch === physical && stored.every((r, i) => r === i);
      const gather = inPlace ? undefined : [...stored, ...Array<number>(physical - batch).fill(stored[0])];
      if (capacity > cache.length)
        reordered = await this.kvReorder.grow(cache.tensors, gather ?? Array.from({ length: physical }, (_, b) => b), capacity);
      else if (gather) reordered = await this.kvReorder.reorder(cache.tensors, gather);
      const past = reordered ?? cache.tensors;
      for (let i = 0; i < this.config.numLayers; i++) {
        feeds[`past_key_values.${i}.key`] = past[2 * i];
        feeds[`past_key_values.${i}.value`] = past[2 * i + 1];
      }
      // Every output is fetched each time: onnxruntime-node's binding breaks when the set changes between runs.
      out = await this.session.run(feeds);
    } catch (e) {
      if (this.device.startsWith("cpu")) throw e;
      // A reorder's or a growth's session says what it was doing (sideSessions.ts); the pass says how big it was.
      const what = e instanceof DeviceRunError ? e.what : deviceFailure(this.deviceKind, (e as Error).message);
      throw DeviceRunError.failed(
        this.device,
        `failed in a forward pass of ${batch} rows × ${seq} tokens: ${what}; use fewer particles or --device cpu`,
      );
    } finally {
      cache.dispose();
      for (const t of reordered ?? []) t.dispose();
    }
    const presents: ort.Tensor[] = [];
    for (let i = 0; i < this.config.numLayers; i++) presents.push(out[`present.${i}.key`], out[`present.${i}.value`]);
    if (this.capacityStep) this.shapesMade.record(presents);
    const samples: RowSamples | undefined =
      sampling && this.samplesInGraph ? unpackDraws(firstRows(out[SAMPLE_DRAWS].data as Float32Array, physical, batch), batch) : undefined;
    const fed = (b: number) => rows[b][seq - 1] !== null;
    const nan = (b: number) => new Error(`the model produced NaN logits (row ${b} of ${batch}, position ${positions[b] - 1})`);
    // Without draws (whose log p would show it), rows are checked for NaN as they are read.
    const checkRows = (logits: Float32Array, read: readonly number[]) => {
      if (samples || allPositions) return logits;
      read.forEach((b, i) => {
        if (!fed(b)) return;
        for (let j = i * this.vocabSize; j < (i + 1) * this.vocabSize; j++) if (Number.isNaN(logits[j])) throw nan(b);
      });
      return logits;
    };
    const hidden = this.hasHidden ? out[HIDDEN_OUTPUT] : undefined;
    const readers = this.logitSessions.readers({
      logits: out.logits,
      hidden,
      batch,
      allPositions,
      check: checkRows,
      draws: this.samplesInGraph && !allPositions,
    });
    const result = { ...readers, samples, state: KvCache.fromTensors(presents, batch, length, mask, positions.slice(0, batch)) };
    // A NaN anywhere in a row makes its draw's log p NaN: one number to check instead of a vocabulary.
    const bad = samples ? rows.findIndex((_, b) => fed(b) && Number.isNaN(samples.logp[b])) : -1;
    if (bad >= 0) {
      result.release();
      result.state.dispose();
      throw nan(bad);
    }
    return result;
  }
}

/** The first `rows` of `count` equally long rows of `data`. */
const firstRows = (data: Float32Array, count: number, rows: number) => data.subarray(0, (data.length / count) * rows);

/** Float arrays one after another (as bytes, by the one concatenation there is). */
const concatFloats = (parts: readonly Float32Array[]) =>
  new Float32Array(concat(parts.map((p) => new Uint8Array(p.buffer, p.byteOffset, p.byteLength))).buffer);
