import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { CheckpointError } from "../../src/engine/train/checkpoint";
import { LOCK_FILE, OutputDirError } from "../../src/engine/train/outputLock";
import { train } from "../../src/engine/train/trainer";
import { shippedModel, tinyTrainConfig } from "./helpers";

const config = tinyTrainConfig;

const deadPid = () => spawnSync(process.execPath, ["-e", ""]).pid!;
const writeLock = (dir: string, owner: Record<string, unknown> | string) => {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, LOCK_FILE), typeof owner === "string" ? owner : JSON.stringify(owner));
};
/** An OutputDirError in one line that matches `message`. */
const oneLine = (message: RegExp) => (e: Error) => {
  assert.ok(e instanceof OutputDirError, `${e.name}: ${e.message}`);
  assert.equal(e.message.split("\n").length, 1);
  assert.match(e.message, message);
  return true;
};

describe("one training per output folder", function () {
  this.timeout(120000);
  const tmp = mkdtempSync(join(tmpdir(), "tsmc-lock-"));

  it("a second run in a folder in use refuses, naming the folder and the owner's pid; the first finishes and unlocks", async () => {
    const model = await shippedModel();
    const dir = join(tmp, "shared");
    let second: Promise<unknown> | undefined;
    const first = await train(
      config(dir),
      { onBatch: () => void (second ??= train(config(dir, { resume: true }), {}, model).catch((e) => e)) },
      model,
    );
    assert.equal(first.stopped, false);
    const refused = (await second) as Error;
    assert.ok(refused instanceof Error, "the second run was refused");
    oneLine(
      new RegExp(
        `--output_dir ${dir} is in use by another training \\(process ${process.pid}, started .*\\): wait for it to end or choose another --output_dir`,
      ),
    )(refused);
    assert.equal(readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").length, 2, "only the first run's metrics");
    assert.ok(!existsSync(join(dir, LOCK_FILE)), "the lock goes with the run");
  });

  it("takes over a lock whose process is gone, or that was never written", async () => {
    const model = await shippedModel();
    for (const [name, owner] of [
      ["dead", { pid: deadPid(), host: hostname(), started: "2024-01-01T00:00:00.000Z" }],
      ["empty", ""],
    ] as const) {
      const dir = join(tmp, `stale-${name}`);
      writeLock(dir, owner);
      const r = await train(config(dir), {}, model);
      assert.equal(r.batches, 2, name);
      assert.ok(!existsSync(join(dir, LOCK_FILE)), name);
    }
  });

  it("leaves a lock of another machine alone, saying how to clear it", async () => {
    const model = await shippedModel();
    const dir = join(tmp, "remote");
    writeLock(dir, { pid: deadPid(), host: "elsewhere.example", started: "2024-01-01T00:00:00.000Z" });
    await assert.rejects(
      train(config(dir), {}, model),
      oneLine(new RegExp(`on elsewhere\\.example.*if it no longer runs, delete ${join(dir, LOCK_FILE)}`)),
    );
    assert.ok(existsSync(join(dir, LOCK_FILE)));
  });

  it("unlocks when the run fails", async () => {
    const model = await shippedModel();
    const dir = join(tmp, "fails");
    await train(config(dir), {}, model);
    await assert.rejects(train(config(dir), {}, model), (e: Error) => e instanceof CheckpointError && /pass --resume/.test(e.message));
    assert.ok(!existsSync(join(dir, LOCK_FILE)));
    // And a stopped run too.
    const ctl = new AbortController();
    const r = await train(config(join(tmp, "stopped"), { numEpochs: 3 }), { signal: ctl.signal, onBatch: () => ctl.abort() }, model);
    assert.equal(r.stopped, true);
    assert.ok(!existsSync(join(tmp, "stopped", LOCK_FILE)));
  });

  it("refuses an unusable --output_dir in one line before loading any model", async () => {
    const file = join(tmp, "a-file");
    writeFileSync(file, "not a folder");
    // No such model: the folder is checked first, so its error is the one reported.
    const noModel = { modelName: join(tmp, "no-such-model") };
    await assert.rejects(train(config(file, noModel)), oneLine(new RegExp(`cannot use --output_dir ${file}: it is a file, not a folder`)));
    await assert.rejects(train(config(join(file, "below"), noModel)), oneLine(/: a file is in the way on its path/));
    if (process.platform === "linux")
      await assert.rejects(
        train(config("/proc/tsmc-x", noModel)),
        oneLine(/cannot use --output_dir \/proc\/tsmc-x: it cannot be created there/),
      );
  });
});
