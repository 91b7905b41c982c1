/**
 * The sessions that read a decoder's logits where they are (onnx/logitGraphs.ts), on the decoder's
 * device: one returning chosen rows, one drawing tokens, and one drawing from a token twist's proposal
 * (rebuilt when another twist comes). Each output's readers go through these (see stepLogits.ts).
 */
import * as ort from "onnxruntime-node";
import { DrawRequest, RowDraws, TokenTwistWeights } from "./causalLm";
import { DeviceRunError, deviceFailure } from "./device";
import { DRAW_INPUT, DRAW_OUTPUT, drawModel, logitRowsModel, ROWS_INPUT, ROWS_OUTPUT } from "./onnx/logitGraphs";

const int64 = (values: readonly number[]) => new ort.Tensor("int64", BigInt64Array.from(values, BigInt), [values.length]);

export class LogitSessions {
  /** Logits fetched so far: how many reads, and their bytes. */
  readonly fetched = { reads: 0, bytes: 0 };
  private rowsSession?: Promise<ort.InferenceSession>;
  private plainDraw?: Promise<ort.InferenceSession>;
  private twistedDraw?: { weights: TokenTwistWeights; session: Promise<ort.InferenceSession> };

  constructor(
    /** onnxruntime's execution provider name: cpu, webgpu. */
    private readonly provider: string,
    private readonly threads: number,
    /** DTYPE of the decoder's logits output. */
    private readonly logitsType: number,
    private readonly vocabSize: number,
    private readonly hiddenSize: number,
    /** How failures are named (the decoder's device description). */
    private readonly device: string,
  ) {}

  /** Rows of `logits` [batch, seq, vocab] from position `from` (−1: the last), as float32 rows × vocab. */
  async rows(logits: ort.Tensor, rows: readonly number[], from: number): Promise<Float32Array> {
    this.rowsSession ??= this.create(logitRowsModel(this.logitsType));
    const out = await this.run(this.rowsSession, { [ROWS_INPUT.logits]: logits, [ROWS_INPUT.rows]: int64(rows), [ROWS_INPUT.from]: new ort.Tensor("int64", BigInt64Array.of(BigInt(from)), [1]) });
    const flat = out[ROWS_OUTPUT].data as Float32Array;
    this.fetched.reads++;
    this.fetched.bytes += flat.byteLength;
    return flat;
  }

  async draw(logits: ort.Tensor, request: DrawRequest): Promise<RowDraws> {
    const n = request.rows.length;
    if (request.uniforms.length !== n) throw new RangeError(`${request.uniforms.length} uniforms for ${n} draws`);
    if (!(request.temperature > 0)) throw new RangeError(`drawing needs a temperature > 0, got ${request.temperature}`);
    const feeds: Record<string, ort.Tensor> = {
      [DRAW_INPUT.logits]: logits,
      [DRAW_INPUT.rows]: int64(request.rows),
      // float32 rounds u just below 1 up to 1, which would select past the last token.
      [DRAW_INPUT.uniform]: new ort.Tensor("float32", Float32Array.from(request.uniforms, (u) => Math.min(u, 1 - 2 ** -24)), [n]),
      [DRAW_INPUT.inverseTemperature]: new ort.Tensor("float32", Float32Array.of(1 / request.temperature), [1]),
    };
    let session: Promise<ort.InferenceSession>;
    if (request.twist) {
      const { weights, hidden } = request.twist;
      if (hidden.length !== n * this.hiddenSize) throw new RangeError(`the twist got ${hidden.length / this.hiddenSize} hidden states for ${n} draws`);
      if (this.twistedDraw?.weights !== weights) {
        this.twistedDraw?.session.then((s) => s.release(), () => undefined);
        this.twistedDraw = { weights, session: this.create(drawModel(this.logitsType, this.vocabSize, weights)) };
      }
      session = this.twistedDraw.session;
      feeds[DRAW_INPUT.hidden] = new ort.Tensor("float32", hidden, [n, this.hiddenSize]);
    } else {
      session = this.plainDraw ??= this.create(drawModel(this.logitsType, this.vocabSize));
    }
    const out = await this.run(session, feeds);
    return {
      token: Int32Array.from(out[DRAW_OUTPUT.token].data as BigInt64Array, Number),
      logp: out[DRAW_OUTPUT.logp].data as Float32Array,
      logq: out[DRAW_OUTPUT.logq].data as Float32Array,
      logpMax: out[DRAW_OUTPUT.logpMax].data as Float32Array,
      logPsi: request.twist ? (out[DRAW_OUTPUT.logPsi].data as Float32Array) : undefined,
    };
  }

  async dispose(): Promise<void> {
    const sessions = [this.rowsSession, this.plainDraw, this.twistedDraw?.session];
    this.rowsSession = this.plainDraw = this.twistedDraw = undefined;
    for (const s of sessions) await s?.then((x) => x.release(), () => undefined);
  }

  private create(model: Uint8Array): Promise<ort.InferenceSession> {
    return ort.InferenceSession.create(model, { executionProviders: [this.provider], intraOpNumThreads: this.threads, interOpNumThreads: 1, graphOptimizationLevel: "all", logSeverityLevel: 3 });
  }

  private async run(session: Promise<ort.InferenceSession>, feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.OnnxValueMapType> {
    try {
      return await (await session).run(feeds);
    } catch (e) {
      if (this.provider === "cpu") throw e;
      throw new DeviceRunError(this.device, `${this.device} failed to read the logits: ${deviceFailure(this.provider, (e as Error).message)}`);
    }
  }
}
