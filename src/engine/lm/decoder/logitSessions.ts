/**
 * How a decoder's outputs are read where they are: each forward pass's readers (stepReaders.ts), and
 * the sessions behind them on the decoder's device (onnx/logitGraphs.ts): one returning chosen rows,
 * one drawing tokens, and one per token twist drawing from its proposal.
 */
import * as ort from "onnxruntime-node";
import { DrawRequest, RowDraws, TokenTwistWeights } from "../causalLm";
import { Device } from "./device";
import { DRAW_INPUT, DRAW_OUTPUT, drawModel, LAST_POSITION, logitRowsModel, ROWS_INPUT, ROWS_OUTPUT } from "../onnx/logitGraphs";
import { createSideSession, int64Tensor, releaseSession, runSideSession } from "./sideSessions";
import { lazyReaders, StepReaders } from "./stepReaders";
import { gatherRows, lastPosition, toFloat32 } from "./tensorData";
import { DrawLayout, unpackDraws } from "../onnx/samplingHead";
import { WebGpuValidation } from "../../environment";

/** Twisted draw graphs kept at once (one per twist; the engine may serve solves with different twists). */
const TWISTS_KEPT = 4;

interface TwistedDraw {
  weights: TokenTwistWeights;
  session: Promise<ort.InferenceSession>;
  /** Runs in flight: an evicted session is released only when none is. */
  inFlight: number;
  evicted: boolean;
}

/** A forward pass's outputs as the runtime returned them. */
export interface OutputTensors {
  logits: ort.Tensor;
  hidden?: ort.Tensor;
  /** Rows read: the first `batch` of the outputs' (a padded pass has more). */
  batch: number;
  /** Every position (teacher forcing), not only the last. */
  allPositions: boolean;
  /** Checks the rows read (NaN) and returns them. */
  check: (logits: Float32Array, rows: readonly number[]) => Float32Array;
  /** Whether `drawRows` is offered (the model draws where it runs). */
  draws: boolean;
}

export class LogitSessions {
  /** Bytes fetched so far, logits and hidden states apart. */
  readonly fetched = { logits: 0, hidden: 0 };
  private rowsSession?: Promise<ort.InferenceSession>;
  private plainDraw?: Promise<ort.InferenceSession>;
  private twistedDraws: TwistedDraw[] = [];

  constructor(
    /** The device its sessions run on: the decoder's. */
    private readonly provider: Device,
    private readonly threads: number,
    /** DTYPE of the decoder's logits output. */
    private readonly logitsType: number,
    private readonly vocabSize: number,
    private readonly hiddenSize: number,
    /** How failures are named (the decoder's device description). */
    private readonly device: string,
    /** How the draw graphs lay out their inverse CDF (the decoder's sampling head's layout). */
    private readonly layout: DrawLayout = "least-work",
    /** On WebGPU, the decoder's validation mode (OnnxDecoderOptions.webgpuValidation). */
    private readonly validation?: WebGpuValidation,
  ) {}

  /**
   * The readers of a forward pass's logits and hidden-state outputs. On the CPU they are memory
   * already; on a GPU they stay there, and reads fetch just the rows asked for (counted in `fetched`).
   * With `draws`, `drawRows` draws from any rows where the logits are.
   */
  readers(output: OutputTensors): StepReaders {
    const { logits, hidden, batch, allPositions, check } = output;
    const every = Array.from({ length: batch }, (_, i) => i);
    const from = allPositions ? 0 : LAST_POSITION;
    const draw = output.draws ? (request: DrawRequest) => this.draw(logits, hidden, request) : undefined;
    if (logits.location !== "gpu-buffer") {
      // The first `batch` rows: a padded pass (a fixed-capacity cache's) has more.
      const inMemory = (t: ort.Tensor) => (allPositions ? toFloat32(t) : lastPosition(t).subarray(0, batch * t.dims[t.dims.length - 1]));
      const rowsLogits = inMemory(logits);
      const rowsHidden = hidden && inMemory(hidden);
      const hiddenRows = rowsHidden && (async (rows: readonly number[]) => gatherRows(rowsHidden, rowsHidden.length / batch, rows));
      return lazyReaders(this.vocabSize, { all: async () => check(rowsLogits, every), hidden: hiddenRows, draw });
    }
    const fetch = async (rows: readonly number[], at: number) => check(await this.rows(logits, rows, at, "logits"), rows);
    return lazyReaders(this.vocabSize, {
      all: () => fetch(every, from),
      some: (rows) => fetch(rows, LAST_POSITION),
      hidden: hidden && ((rows) => this.rows(hidden, rows, from, "hidden")),
      draw,
      free: () => {
        logits.dispose();
        hidden?.dispose();
      },
    });
  }

  /**
   * Rows of `tensor` [batch, seq, width] (logits, or the hidden state: same element type) from position
   * `from` (−1: the last), as float32 (rows × positions) × width.
   */
  async rows(tensor: ort.Tensor, rows: readonly number[], from: number, what: "logits" | "hidden"): Promise<Float32Array> {
    this.rowsSession ??= this.create(logitRowsModel(this.logitsType));
    const out = await this.run(this.rowsSession, {
      [ROWS_INPUT.logits]: tensor,
      [ROWS_INPUT.rows]: int64Tensor(rows),
      [ROWS_INPUT.from]: new ort.Tensor("int64", BigInt64Array.of(BigInt(from)), [1]),
    });
    const flat = out[ROWS_OUTPUT].data as Float32Array;
    this.fetched[what] += flat.byteLength;
    return flat;
  }

  /** Draws from rows of `logits`; a twisted request reads the same rows of `hidden` ([batch, seq, hiddenSize]). */
  async draw(logits: ort.Tensor, hidden: ort.Tensor | undefined, request: DrawRequest): Promise<RowDraws> {
    const n = request.rows.length;
    if (request.uniforms.length !== n) throw new RangeError(`${request.uniforms.length} uniforms for ${n} draws`);
    if (!(request.temperature > 0)) throw new RangeError(`drawing needs a temperature > 0, got ${request.temperature}`);
    const feeds: Record<string, ort.Tensor> = {
      [DRAW_INPUT.logits]: logits,
      [DRAW_INPUT.rows]: int64Tensor(request.rows),
      // float32 rounds u just below 1 up to 1, which would select past the last token.
      [DRAW_INPUT.uniform]: new ort.Tensor(
        "float32",
        Float32Array.from(request.uniforms, (u) => Math.min(u, 1 - 2 ** -24)),
        [n],
      ),
      [DRAW_INPUT.inverseTemperature]: new ort.Tensor("float32", Float32Array.of(1 / request.temperature), [1]),
    };
    let out: ort.InferenceSession.OnnxValueMapType;
    if (request.twist) {
      if (!hidden) throw new Error("a twisted draw reads the model's last_hidden_state, which it does not output");
      const H = request.twist.weights.hiddenSize;
      if (H !== this.hiddenSize) throw new RangeError(`the twist reads hidden states of ${H}, the model's are ${this.hiddenSize}`);
      feeds[DRAW_INPUT.hidden] = hidden;
      const entry = this.twistedDraw(request.twist.weights);
      entry.inFlight++;
      try {
        out = await this.run(entry.session, feeds);
      } finally {
        entry.inFlight--;
        if (entry.evicted && entry.inFlight === 0) void releaseSession(entry.session);
      }
    } else {
      out = await this.run((this.plainDraw ??= this.create(drawModel(this.logitsType, this.vocabSize, undefined, this.layout))), feeds);
    }
    return unpackDraws(out[DRAW_OUTPUT].data as Float32Array, n);
  }

  async dispose(): Promise<void> {
    const sessions = [this.rowsSession, this.plainDraw, ...this.twistedDraws.map((d) => d.session)];
    this.rowsSession = this.plainDraw = undefined;
    this.twistedDraws = [];
    for (const s of sessions) if (s) await releaseSession(s);
  }

  /** The draw graph for these weights: kept per twist, the least recently used evicted past TWISTS_KEPT. */
  private twistedDraw(weights: TokenTwistWeights): TwistedDraw {
    const at = this.twistedDraws.findIndex((d) => d.weights === weights);
    const entry =
      at >= 0
        ? this.twistedDraws.splice(at, 1)[0]
        : { weights, session: this.create(drawModel(this.logitsType, this.vocabSize, weights, this.layout)), inFlight: 0, evicted: false };
    this.twistedDraws.push(entry);
    for (const old of this.twistedDraws.splice(0, Math.max(0, this.twistedDraws.length - TWISTS_KEPT))) {
      old.evicted = true;
      if (old.inFlight === 0) void releaseSession(old.session);
    }
    return entry;
  }

  private create(model: Uint8Array): Promise<ort.InferenceSession> {
    return createSideSession(model, this.provider, this.threads, [], this.validation);
  }

  private run(session: Promise<ort.InferenceSession>, feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.OnnxValueMapType> {
    return runSideSession(session, feeds, this.provider, this.device, "read the logits");
  }
}
