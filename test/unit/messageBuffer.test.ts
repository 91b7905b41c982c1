import assert from "node:assert/strict";
import { MessageBuffer } from "../../src/extension/messageBuffer";

describe("webview message buffer", () => {
  it("queues while the webview loads and delivers in order on ready, after the snapshot", () => {
    const sent: string[] = [];
    const buf = new MessageBuffer<string>(
      (m) => (sent.push(m), true),
      () => ["snapshot"],
    );
    buf.post("a");
    buf.post("b");
    assert.deepEqual(sent, []);
    assert.equal(buf.pending, 2);
    buf.ready();
    assert.deepEqual(sent, ["snapshot", "a", "b"]);
    buf.post("c");
    assert.deepEqual(sent, ["snapshot", "a", "b", "c"]);
  });

  it("queues again while the view is hidden, and replays when it is back", () => {
    const sent: string[] = [];
    const buf = new MessageBuffer<string>(
      (m) => (sent.push(m), true),
      () => ["state"],
    );
    buf.ready();
    buf.pause();
    buf.post("x");
    assert.deepEqual(sent, ["state"]);
    buf.ready();
    assert.deepEqual(sent, ["state", "state", "x"]);
  });

  it("keeps a message the webview did not accept", async () => {
    const sent: string[] = [];
    let accept = false;
    const buf = new MessageBuffer<string>((m) => (accept ? (sent.push(m), true) : false));
    buf.ready();
    buf.post("lost?");
    await new Promise((r) => setImmediate(r));
    assert.equal(buf.pending, 1);
    accept = true;
    buf.ready();
    assert.deepEqual(sent, ["lost?"]);
  });

  it("bounds the queue, dropping the oldest", () => {
    const buf = new MessageBuffer<number>(
      () => true,
      () => [],
      3,
    );
    for (let i = 0; i < 5; i++) buf.post(i);
    assert.equal(buf.pending, 3);
  });
});
