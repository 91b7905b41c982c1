/**
 * A counting semaphore: at most `limit` holders at once, the others wait in arrival order. A wait can
 * be abandoned with an AbortSignal (its reason is thrown and the slot is never taken).
 */
export class Semaphore {
  private held = 0;
  private readonly waiting: { grant: () => void }[] = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`the concurrency limit must be a positive integer, got ${limit}`);
  }

  /** Holders now. */
  get inUse(): number {
    return this.held;
  }

  /** Waits for a slot; call the returned function once to give it back. */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.held < this.limit) this.held++;
    else
      await new Promise<void>((resolve, reject) => {
        const entry = {
          grant: () => {
            signal?.removeEventListener("abort", onAbort);
            resolve();
          },
        };
        const onAbort = () => {
          this.waiting.splice(this.waiting.indexOf(entry), 1);
          reject(signal!.reason);
        };
        this.waiting.push(entry);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    let released = false;
    return () => {
      if (released) return;
      released = true;
      // The slot passes straight to the next waiter (the count stays), or is freed.
      const next = this.waiting.shift();
      if (next) next.grant();
      else this.held--;
    };
  }
}
