import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AtomicWriteIo, writeFileAtomic } from "../../src/engine/util/atomicWrite";
import { DiskFullError } from "../../src/engine/util/errors";
import { mountTinyDisk } from "./tinyDisk";

const NODE_WRITE: AtomicWriteIo["write"] = (fd, buf, off, len) => writeSync(fd, buf, off, len);
/** Node's writes, at most `chunk` bytes each, as a kernel may do on a nearly full disk. */
const shortWrites = (chunk: number): Partial<AtomicWriteIo> => ({
  write: (fd, buf, off, len) => NODE_WRITE(fd, buf, off, Math.min(len, chunk)),
});
const enospc = () => Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });

/** The temp files left next to a target. */
const temps = (dir: string) => readdirSync(dir).filter((f) => f.endsWith(".tmp"));

describe("atomic writes", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "tsmc-atomic-"))));

  it("writes every byte through short writes that make progress", () => {
    const path = join(dir, "a.json");
    const data = "x".repeat(1000) + "end";
    writeFileAtomic(path, data, shortWrites(7));
    assert.equal(readFileSync(path, "utf8"), data);
    assert.deepEqual(temps(dir), []);
  });

  it("a write that stops making progress is a full disk: the previous file stays, the temp goes", () => {
    const path = join(dir, "checkpoint.json");
    writeFileSync(path, "previous");
    let calls = 0;
    const io: Partial<AtomicWriteIo> = { write: (fd, buf, off, len) => (calls++ === 0 ? NODE_WRITE(fd, buf, off, Math.min(len, 10)) : 0) };
    assert.throws(
      () => writeFileAtomic(path, "y".repeat(100), io),
      (e: Error) => {
        assert.ok(e instanceof DiskFullError, String(e));
        assert.equal(e.message.split("\n").length, 1);
        assert.match(
          e.message,
          new RegExp(
            `cannot write checkpoint\\.json in ${dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: the disk holding .* is full; free some space`,
          ),
        );
        assert.doesNotMatch(e.message, /corrupt|invalid|model/i);
        return true;
      },
    );
    assert.equal(readFileSync(path, "utf8"), "previous");
    assert.deepEqual(temps(dir), []);
  });

  for (const code of ["ENOSPC", "EDQUOT"]) {
    it(`${code} while writing is a full disk, named in one line`, () => {
      const path = join(dir, "twist.json");
      writeFileSync(path, "previous");
      const io: Partial<AtomicWriteIo> = {
        write: () => {
          throw Object.assign(enospc(), { code });
        },
      };
      assert.throws(
        () => writeFileAtomic(path, "new", io),
        (e: Error) => e instanceof DiskFullError && e.reason === code && /twist\.json/.test(e.message) && !e.message.includes("\n"),
      );
      assert.equal(readFileSync(path, "utf8"), "previous");
      assert.deepEqual(temps(dir), []);
    });
  }

  it("refuses to rename a temp file whose size is not the data's", () => {
    const path = join(dir, "b.json");
    writeFileSync(path, "previous");
    assert.throws(() => writeFileAtomic(path, "new data", { size: () => 3 }), /holds 3 of 8 bytes/);
    assert.equal(readFileSync(path, "utf8"), "previous");
    assert.deepEqual(temps(dir), []);
  });

  it("removes the temp files of killed writers of the same file, and only those", () => {
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!;
    const path = join(dir, "checkpoint.json");
    const stale = `.checkpoint.json.${dead}.1700000000000.tmp`;
    const live = `.checkpoint.json.${process.ppid}.1700000000000.tmp`;
    const other = `.twist.json.${dead}.1700000000000.tmp`;
    const lookalike = `.checkpoint.json.1.${dead}.1700000000000.tmp`;
    for (const f of [stale, live, other, lookalike]) writeFileSync(join(dir, f), "half a checkpoi");
    writeFileAtomic(path, "{}");
    assert.deepEqual(temps(dir).sort(), [live, other, lookalike].sort());
    assert.equal(readFileSync(path, "utf8"), "{}");
  });

  describe("on a real tiny disk (tmpfs)", function () {
    let disk: ReturnType<typeof mountTinyDisk>;
    before(function () {
      disk = mountTinyDisk(64 * 1024);
      if (typeof disk === "string") this.skip();
    });
    after(() => (typeof disk === "string" ? undefined : disk?.unmount()));

    it("a write the disk cannot hold fails with DiskFullError and leaves the previous file whole", function () {
      if (typeof disk === "string") return this.skip();
      const path = join(disk.dir, "checkpoint.json");
      const first = "a".repeat(40 * 1024);
      writeFileAtomic(path, first);
      // The new copy must sit beside the old one until the rename: 80 KiB on a 64 KiB disk.
      assert.throws(
        () => writeFileAtomic(path, "b".repeat(40 * 1024)),
        (e: Error) => e instanceof DiskFullError && /cannot write checkpoint\.json in .*: the disk holding .* is full/.test(e.message),
      );
      assert.equal(readFileSync(path, "utf8"), first);
      assert.deepEqual(temps(disk.dir), []);
      assert.ok(existsSync(path));
    });
  });
});
