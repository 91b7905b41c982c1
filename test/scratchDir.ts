/**
 * One scratch directory per test run, which every temporary path of the run lands in and which goes when
 * the run ends. Tests make their folders with mkdtempSync(join(tmpdir(), …)) and the processes they start
 * inherit TMPDIR; many of those folders outlived their run (2,171 of them, about 25 GB, which with old
 * clones filled this machine's disk until a checkpoint write in a test failed for want of space).
 * os.tmpdir() reads TMPDIR at each call, so setting it here, before any test file is loaded, moves them all.
 *
 * A run that was killed leaves its directory behind; the next run removes those whose process is gone.
 * Loaded by mocha (`.mocharc.json`, and `-r` in the WebGPU command).
 */
import { chmodSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isProcessAlive } from "../src/engine/util/processAlive";

const PREFIX = "tsmc-tests-";

const parent = tmpdir();
for (const name of readdirSync(parent)) {
  const pid = Number(/^tsmc-tests-(\d+)-/.exec(name)?.[1]);
  if (pid && pid !== process.pid && !isProcessAlive(pid)) rmSync(join(parent, name), { recursive: true, force: true });
}

const scratch = mkdtempSync(join(parent, `${PREFIX}${process.pid}-`));
// Open to other users, as the system's temporary directory is: some tests run a model as another user
// from a read-only folder of their own inside it (mkdtemp's 0700 keeps those folders to themselves).
chmodSync(scratch, 0o755);
process.env.TMPDIR = scratch;
process.on("exit", () => rmSync(scratch, { recursive: true, force: true }));
