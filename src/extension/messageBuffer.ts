/**
 * Messages for a webview that may not be listening: while it loads, or after it was hidden and its
 * page thrown away, posts are queued; when its script says "ready" the queue is delivered in order.
 * (A webview drops messages posted before its script runs.) No `vscode` import, so it is unit-tested.
 */
export class MessageBuffer<M> {
  private queue: M[] = [];
  private listening = false;

  constructor(
    private readonly send: (message: M) => Thenable<boolean> | Promise<boolean> | boolean,
    /** Messages that rebuild the whole view; sent first on every "ready", instead of stale queued ones. */
    private readonly snapshot: () => M[] = () => [],
    private readonly limit = 10000,
  ) {}

  post(message: M): void {
    if (this.listening) {
      void Promise.resolve(this.send(message)).then((delivered) => {
        if (!delivered) {
          this.listening = false;
          this.enqueue(message);
        }
      });
    } else {
      this.enqueue(message);
    }
  }

  /** The webview's script is running and listening: deliver the snapshot, then what queued up. */
  ready(): void {
    const queued = this.queue;
    this.queue = [];
    this.listening = true;
    for (const m of this.snapshot()) void this.send(m);
    for (const m of queued) void this.send(m);
  }

  /** The webview went away (hidden or disposed): queue until it is ready again. */
  pause(): void {
    this.listening = false;
  }

  get pending(): number {
    return this.queue.length;
  }

  private enqueue(message: M): void {
    this.queue.push(message);
    // A long run while the view is closed: the snapshot rebuilds the view anyway, drop the oldest.
    if (this.queue.length > this.limit) this.queue.splice(0, this.queue.length - this.limit);
  }
}
