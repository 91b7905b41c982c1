/**
 * The logits of a StepOutput, read on demand. On a GPU they stay a device buffer from which only the
 * rows a caller asks for are fetched (most steps take the in-graph draws and fetch none), freed when
 * the caller releases the output.
 */
import { StepOutput } from "./causalLm";

export type StepLogits = Pick<StepOutput, "readLogits" | "readRows" | "release">;

let onDevice = 0;
/** How many outputs hold logits on a device, not yet released: tests check nothing leaks. */
export function liveDeviceLogits(): number {
  return onDevice;
}

/** Logits already in memory (toy models). */
export function logitsInMemory(logits: Float32Array, vocab: number): StepLogits {
  return lazyLogits(vocab, async () => logits);
}

/**
 * Logits made by `readAll` (at most once) or, for some rows, by `readSome`. `free` gives up what the
 * device holds; outputs with one are counted by liveDeviceLogits until released.
 */
export function lazyLogits(
  vocab: number,
  readAll: () => Promise<Float32Array>,
  readSome?: (rows: readonly number[]) => Promise<Float32Array>,
  free?: () => void,
): StepLogits {
  let all: Promise<Float32Array> | undefined;
  let released = false;
  if (free) onDevice++;
  const split = (flat: Float32Array, rows: readonly number[], at: (i: number) => number) => rows.map((_, i) => flat.subarray(at(i) * vocab, (at(i) + 1) * vocab));
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
        return split(await all, rows, (i) => rows[i]);
      }
      return split(await readSome(rows), rows, (i) => i);
    },
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
