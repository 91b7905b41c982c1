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
