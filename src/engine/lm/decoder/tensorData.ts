/** Reads onnxruntime output tensors as float32 rows, whatever precision the model was exported in. */
import * as ort from "onnxruntime-node";

/** fp16 bits → fp32, for models exported in half precision. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

// One scratch word for floatToHalf's bit reading: no allocation per value (a graph's weights are millions).
const SCRATCH_FLOAT = new Float32Array(1);
const SCRATCH_BITS = new Uint32Array(SCRATCH_FLOAT.buffer);

/** fp32 → fp16 bits, rounded to nearest even (overflow to ±∞), for constants of half-precision models. */
export function floatToHalf(x: number): number {
  SCRATCH_FLOAT[0] = x;
  const bits = SCRATCH_BITS[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    // Subnormal: the implicit 1 shifted in, rounded to nearest even.
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = m >> shift;
    const rest = m & ((1 << shift) - 1);
    if (rest > half || (rest === half && r & 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && r & 1)) r++;
  return sign | r;
}

/** A whole array fp32 → fp16 bits, as floatToHalf rounds each value, with the common case (a normal half) inline. */
export function floatsToHalf(a: Float32Array): Uint16Array {
  const bits = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) {
    const b = bits[i];
    const exp = (b >>> 23) & 0xff;
    if (exp > 112 && exp < 142) {
      // Exponent within a normal half's range: rebias, round the mantissa to nearest even.
      const mant = b & 0x7fffff;
      let r = ((exp - 112) << 10) | (mant >> 13);
      const rest = mant & 0x1fff;
      if (rest > 0x1000 || (rest === 0x1000 && r & 1)) r++;
      out[i] = ((b >>> 16) & 0x8000) | r;
    } else out[i] = floatToHalf(a[i]);
  }
  return out;
}

export function toFloat32(t: ort.Tensor): Float32Array {
  if (t.type === "float32") return t.data as Float32Array;
  if (t.type === "float16") {
    const src = t.data as Uint16Array;
    const out = new Float32Array(src.length);
    for (let i = 0; i < src.length; i++) out[i] = halfToFloat(src[i]);
    return out;
  }
  throw new Error(`unsupported output type ${t.type}`);
}

/** Copies the last position of a [batch, seq, width] tensor into a batch × width array. */
export function lastPosition(t: ort.Tensor): Float32Array {
  const [batch, seq, width] = t.dims as number[];
  const data = toFloat32(t);
  if (seq === 1) return data;
  const out = new Float32Array(batch * width);
  for (let b = 0; b < batch; b++) out.set(data.subarray((b * seq + seq - 1) * width, (b * seq + seq) * width), b * width);
  return out;
}

/** Rows `rows` of `src` (rows of `rowSize` values), copied in that order. */
export function gatherRows<T extends Float32Array | Uint16Array | Uint8Array>(src: T, rowSize: number, rows: readonly number[]): T {
  const out = new (src.constructor as { new (n: number): T })(rows.length * rowSize);
  rows.forEach((r, i) => out.set(src.subarray(r * rowSize, (r + 1) * rowSize), i * rowSize));
  return out;
}
