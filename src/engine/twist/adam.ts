/** Adam (Kingma & Ba 2015) over Float32 parameter arrays, with Float64 moments so that a resumed run continues bit for bit. */

export interface AdamState {
  t: number;
  m: Float64Array[];
  v: Float64Array[];
}

export class Adam {
  readonly state: AdamState;

  constructor(
    private readonly params: Float32Array[],
    private readonly lr: number,
    private readonly beta1 = 0.9,
    private readonly beta2 = 0.999,
    private readonly eps = 1e-8,
    state?: AdamState,
  ) {
    if (!(lr > 0)) throw new RangeError(`learning rate must be > 0, got ${lr}`);
    this.state = state ?? { t: 0, m: params.map((p) => new Float64Array(p.length)), v: params.map((p) => new Float64Array(p.length)) };
    params.forEach((p, i) => {
      if (this.state.m[i].length !== p.length || this.state.v[i].length !== p.length)
        throw new Error("optimizer state does not match the parameters");
    });
  }

  /** One update with gradients `grads` (same shapes as the parameters). Throws on a NaN gradient. */
  step(grads: Float64Array[]): void {
    grads.forEach((g, i) => {
      for (let j = 0; j < g.length; j++)
        if (!Number.isFinite(g[j]))
          throw new Error(`non-finite gradient in parameter ${i} at ${j}: training diverged (try a lower learning rate)`);
    });
    const s = this.state;
    s.t++;
    const c1 = 1 - this.beta1 ** s.t;
    const c2 = 1 - this.beta2 ** s.t;
    this.params.forEach((p, i) => {
      const g = grads[i],
        m = s.m[i],
        v = s.v[i];
      for (let j = 0; j < p.length; j++) {
        m[j] = this.beta1 * m[j] + (1 - this.beta1) * g[j];
        v[j] = this.beta2 * v[j] + (1 - this.beta2) * g[j] * g[j];
        p[j] -= (this.lr * (m[j] / c1)) / (Math.sqrt(v[j] / c2) + this.eps);
      }
    });
  }
}
