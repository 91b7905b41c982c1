/**
 * The logits and hidden state of a StepOutput, read on demand. On a GPU they stay device buffers from
 * which only the rows a caller asks for are fetched (most steps take the in-graph draws and fetch
 * none), freed when the caller releases the output.
 */
import { DrawRequest, RowDraws, StepOutput } from "../causalLm";

export type StepReaders = Pick<StepOutput, "readLogits" | "readRows" | "readHidden" | "drawRows" | "release">;

export interface StepSources {
  /** Every row (at most once). */
  all: () => Promise<Float32Array>;
  /** Just some rows, rows × vocab; without it rows come from `all`. */
  some?: (rows: readonly number[]) => Promise<Float32Array>;
  /** The hidden state of some rows, flat (each row's part of equal length); absent where the model has none. */
  hidden?: (rows: readonly number[]) => Promise<Float32Array>;
  /** Draws where the logits are (StepOutput.drawRows). */
  draw?: (request: DrawRequest) => Promise<RowDraws>;
  /** Gives up what the device holds; outputs with it are counted by liveDeviceLogits until released. */
  free?: () => void;
}

let onDevice = 0;
/** How many outputs hold logits on a device, not yet released: tests check nothing leaks. */
export function liveDeviceLogits(): number {
  return onDevice;
}

/** Logits already in memory (toy models). */
export function logitsInMemory(logits: Float32Array, vocab: number): StepReaders {
  return lazyReaders(vocab, { all: async () => logits });
}

/** An output's readers from its sources; nothing is read until asked for, and nothing after release. */
export function lazyReaders(vocab: number, { all: readAll, some: readSome, hidden, draw, free }: StepSources): StepReaders {
  let all: Promise<Float32Array> | undefined;
  let released = false;
  if (free) onDevice++;
  /** Row `at(i)` of `flat` for each i, as views of `width` values. */
  const split = (flat: Float32Array, count: number, width: number, at: (i: number) => number = (i) => i) =>
    Array.from({ length: count }, (_, i) => flat.subarray(at(i) * width, (at(i) + 1) * width));
  const check = () => {
    if (released) throw new Error("logits read after their step output was released");
  };
  return {
    async readLogits() {
      check();
      all ??= readAll();
      return all;
    },
    async readRows(rows) {
      check();
      if (!rows.length) return [];
      if (all || !readSome) {
        all ??= readAll();
        return split(await all, rows.length, vocab, (i) => rows[i]);
      }
      return split(await readSome(rows), rows.length, vocab);
    },
    readHidden:
      hidden &&
      (async (rows) => {
        check();
        if (!rows.length) return [];
        const flat = await hidden(rows);
        return split(flat, rows.length, flat.length / rows.length);
      }),
    drawRows:
      draw &&
      (async (request) => {
        check();
        return draw(request);
      }),
    release() {
      if (released) return;
      released = true;
      if (free) {
        free();
        onDevice--;
      }
    },
  };
}
