/**
 * Gradients of the twist heads, by hand. Both heads are small (linear maps of the hidden state), so the
 * chain rule fits in a few loops; a finite-difference test checks every parameter.
 */
import { CONFIDENCE_FEATURES } from "../smc/twist";
import { logSigmoid, TokenTwistHead, ValueTwistHead } from "./heads";

/** Accumulates ∂L/∂(U, W, b) of the token head from coefficients g_s = ∂L/∂log ψ(h, s). */
export class TokenHeadGradient {
  readonly dU: Float64Array;
  readonly dW: Float64Array;
  readonly db: Float64Array;

  constructor(readonly head: TokenTwistHead) {
    const { hiddenSize: H, vocabSize: V, rank: R } = head.p;
    this.dU = new Float64Array(H * R);
    this.dW = new Float64Array(R * V);
    this.db = new Float64Array(V);
  }

  /**
   * Adds the gradient of Σ_s g[s]·log ψ(h, s) for one hidden state h. `g` is dense over the
   * vocabulary, or one token with a coefficient when `token` is given. With log ψ = log σ(x),
   * ∂log ψ/∂x = 1 − σ(x).
   */
  add(hidden: Float32Array, offset: number, g: Float64Array | number, token?: number): void {
    const { hiddenSize: H, vocabSize: V, rank: R, U, W, b } = this.head.p;
    const z = new Float64Array(R);
    for (let i = 0; i < H; i++) {
      const h = hidden[offset + i];
      for (let k = 0; k < R; k++) z[k] += h * U[i * R + k];
    }
    const dx = (s: number, gs: number) => {
      let x = b[s];
      for (let k = 0; k < R; k++) x += z[k] * W[k * V + s];
      return gs * (1 - Math.exp(logSigmoid(x)));
    };
    // back[k] = Σ_s W[k, s]·∂L/∂x_s: the gradient reaching the features z.
    const back = new Float64Array(R);
    const one = (s: number, gx: number) => {
      this.db[s] += gx;
      for (let k = 0; k < R; k++) {
        this.dW[k * V + s] += z[k] * gx;
        back[k] += W[k * V + s] * gx;
      }
    };
    if (typeof g === "number") one(token!, dx(token!, g));
    else for (let s = 0; s < V; s++) if (g[s] !== 0) one(s, dx(s, g[s]));
    for (let i = 0; i < H; i++) {
      const h = hidden[offset + i];
      if (h === 0) continue;
      for (let k = 0; k < R; k++) this.dU[i * R + k] += h * back[k];
    }
  }

  /** In the order of TokenTwistHead.parameters(). */
  get grads(): Float64Array[] {
    return [this.dU, this.dW, this.db];
  }
}

/** Accumulates ∂L/∂(w, c) of the value head. */
export class ValueHeadGradient {
  readonly dw: Float64Array;
  readonly du = new Float64Array(CONFIDENCE_FEATURES);
  readonly dc = new Float64Array(1);

  constructor(readonly head: ValueTwistHead) {
    this.dw = new Float64Array(head.p.hiddenSize);
  }

  /** Adds coeff·∂log ψ/∂θ for row `row`, with log ψ = log σ(z): ∂log σ(z)/∂z = 1 − σ(z). */
  addLogPsi(hidden: Float32Array, confidence: Float32Array | undefined, row: number, coeff: number): void {
    const z = this.logit(hidden, confidence, row);
    this.addLogit(hidden, confidence, row, coeff * (1 - Math.exp(logSigmoid(z))));
  }

  /** The logit z of one row. */
  logit(hidden: Float32Array, confidence: Float32Array | undefined, row: number): number {
    const H = this.head.p.hiddenSize,
      F = CONFIDENCE_FEATURES;
    return this.head.logits(hidden.subarray(row * H, (row + 1) * H), 1, confidence?.subarray(row * F, (row + 1) * F))[0];
  }

  /** Adds coeff·∂z/∂θ for the logit z = w·h + u·f + c of row `row`. */
  addLogit(hidden: Float32Array, confidence: Float32Array | undefined, row: number, coeff: number): void {
    const H = this.head.p.hiddenSize,
      F = CONFIDENCE_FEATURES;
    for (let i = 0; i < H; i++) this.dw[i] += coeff * hidden[row * H + i];
    if (confidence) for (let j = 0; j < F; j++) this.du[j] += coeff * confidence[row * F + j];
    this.dc[0] += coeff;
  }

  get grads(): Float64Array[] {
    return [this.dw, this.du, this.dc];
  }
}
