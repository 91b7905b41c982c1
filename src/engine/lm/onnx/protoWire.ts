/**
 * Just enough of the protobuf wire format to edit ONNX graphs without decoding their weights: walk a
 * message's fields, copy untouched fields byte for byte, and encode the few new messages we add.
 * Gigabyte initializers pass through as raw slices.
 */

export const enum WireType {
  Varint = 0,
  Fixed64 = 1,
  Bytes = 2,
  Fixed32 = 5,
}

export interface Field {
  field: number;
  wire: WireType;
  /** The whole field, key included: copy this to keep it unchanged. */
  raw: Uint8Array;
  /** The value: the payload of a Bytes field, the bytes of a number otherwise. */
  value: Uint8Array;
  /** The decoded varint, for Varint fields. */
  varint?: bigint;
}

function readVarint(buf: Uint8Array, pos: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    if (pos >= buf.length) throw new Error("truncated protobuf varint");
    const b = buf[pos++];
    result |= BigInt(b & 0x7f) << shift;
    if (!(b & 0x80)) return [result, pos];
    shift += 7n;
    if (shift > 70n) throw new Error("malformed protobuf varint");
  }
}

/** The fields of one message, in order. */
export function* fields(buf: Uint8Array): Generator<Field> {
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    const [key, afterKey] = readVarint(buf, pos);
    pos = afterKey;
    const field = Number(key >> 3n);
    const wire = Number(key & 7n) as WireType;
    let value: Uint8Array;
    let varint: bigint | undefined;
    switch (wire) {
      case WireType.Varint: {
        const [v, next] = readVarint(buf, pos);
        value = buf.subarray(pos, next);
        varint = v;
        pos = next;
        break;
      }
      case WireType.Fixed64:
        value = buf.subarray(pos, pos + 8);
        pos += 8;
        break;
      case WireType.Fixed32:
        value = buf.subarray(pos, pos + 4);
        pos += 4;
        break;
      case WireType.Bytes: {
        const [len, next] = readVarint(buf, pos);
        value = buf.subarray(next, next + Number(len));
        pos = next + Number(len);
        break;
      }
      default:
        throw new Error(`unsupported protobuf wire type ${wire as number}`);
    }
    if (pos > buf.length) throw new Error("truncated protobuf message");
    yield { field, wire, raw: buf.subarray(start, pos), value, varint };
  }
}

const utf8 = new TextDecoder();
export const text = (f: Field) => utf8.decode(f.value);

function varint(n: bigint | number): number[] {
  // Negative numbers as 64-bit two's complement, as protobuf writes int64 (ten bytes).
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
}

/** Encodes a message from parts: numbers are varint fields, strings and bytes are length-delimited. */
export function message(parts: [field: number, value: number | bigint | string | Uint8Array][]): Uint8Array {
  const chunks: Uint8Array[] = [];
  for (const [field, value] of parts) {
    if (typeof value === "number" || typeof value === "bigint") {
      chunks.push(Uint8Array.from([...varint((field << 3) | WireType.Varint), ...varint(value)]));
    } else {
      const payload = typeof value === "string" ? new TextEncoder().encode(value) : value;
      chunks.push(Uint8Array.from([...varint((field << 3) | WireType.Bytes), ...varint(payload.length)]), payload);
    }
  }
  return concat(chunks);
}

/** A length-delimited field wrapping an already encoded payload. */
export function bytesField(field: number, payload: Uint8Array): Uint8Array {
  return concat([Uint8Array.from([...varint((field << 3) | WireType.Bytes), ...varint(payload.length)]), payload]);
}

export function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.length;
  }
  return out;
}
