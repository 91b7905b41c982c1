/**
 * `train` from the command line where its output folder is the problem: a full disk, a folder in use,
 * a damaged checkpoint. Each must end in one line and a non-zero exit, with the last checkpoint kept.
 * Runs the CLI from source (tsx), so no build is needed.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openModelFolder } from "../../src/engine/lm/model/modelFolder";
import { loadCheckpoint } from "../../src/engine/train/checkpoint";
import { LOCK_FILE } from "../../src/engine/train/outputLock";
import { MODEL_DIR } from "./helpers";
import { mountTinyDisk, TinyDisk } from "./tinyDisk";

const ROOT = join(__dirname, "../..");
const CLI = ["-r", "tsx/cjs", join(ROOT, "src/engine/cli/main.ts")];
const run = (...args: string[]) => spawnSync(process.execPath, [...CLI, ...args], { cwd: ROOT, encoding: "utf8", timeout: 120000 });
const SMALL = [
  "--twist",
  "token",
  "--rank",
  "4",
  "--num_examples",
  "4",
  "--batch_size",
  "2",
  "--num_twist_samples",
  "3",
  "--output_length",
  "24",
  "--threads",
  "1",
  "--save_every",
  "1",
];
/** stderr, less npm's and node's own notices: what the user reads from twisted-smc. */
const said = (stderr: string) => stderr.split("\n").filter((l) => l.startsWith("twisted-smc"));

describe("train's output folder from the command line", function () {
  this.timeout(120000);
  const tmp = mkdtempSync(join(tmpdir(), "tsmc-out-"));

  it("a damaged checkpoint is refused in one line naming the file and the field (exit 3)", () => {
    const out = join(tmp, "damaged");
    assert.equal(run("train", ...SMALL, "--num_epochs", "1", "--output_dir", out).status, 0);
    const path = join(out, "checkpoint.json");
    const doc = JSON.parse(readFileSync(path, "utf8"));
    doc.progress.batch = null;
    writeFileSync(path, JSON.stringify(doc));
    const r = run("train", ...SMALL, "--num_epochs", "2", "--output_dir", out, "--resume");
    assert.equal(r.status, 3, r.stdout + r.stderr);
    assert.deepEqual(said(r.stderr), [
      `twisted-smc: ${path}: progress.batch must be a non-negative integer, got null (the checkpoint is damaged; delete it to start over)`,
    ]);
    assert.doesNotMatch(r.stdout, /resuming|Done/);
  });

  it("a second run on a folder in use is refused in one line naming the folder and the pid; a signal-stopped run unlocks", async () => {
    const out = join(tmp, "busy");
    const LONG = [
      "--twist",
      "token",
      "--rank",
      "4",
      "--num_examples",
      "400",
      "--batch_size",
      "2",
      "--num_twist_samples",
      "3",
      "--output_length",
      "24",
      "--threads",
      "1",
      "--num_epochs",
      "1",
    ];
    const first = spawn(process.execPath, [...CLI, "train", ...LONG, "--output_dir", out], { cwd: ROOT });
    let stdout = "",
      stderr = "";
    const seen = (text: () => string, what: string) =>
      new Promise<void>((resolve) => {
        const check = () => text().includes(what) && resolve();
        first.stdout.on("data", check);
        first.stderr.on("data", check);
        first.on("close", () => resolve()); // the assertions below then say what went wrong
      });
    first.stdout.on("data", (d) => (stdout += d));
    first.stderr.on("data", (d) => (stderr += d));
    const closed = new Promise<number | null>((resolve) => first.on("close", resolve));
    await seen(() => stdout, " loss ");
    const second = run("train", ...LONG, "--output_dir", out, "--resume");
    first.kill("SIGTERM");
    await seen(() => stderr, "stopping after the current batch");
    // A second signal exits at once (trainCommand), the way an impatient Ctrl-C does: the lock goes too.
    first.kill("SIGTERM");
    assert.equal(await closed, 130, stdout + stderr);
    assert.equal(second.status, 3, second.stderr);
    const lines = said(second.stderr);
    assert.equal(lines.length, 1, second.stderr);
    assert.match(
      lines[0],
      new RegExp(
        `^twisted-smc: --output_dir ${out} is in use by another training \\(process ${first.pid}, started [^)]*\\): wait for it to end or choose another --output_dir$`,
      ),
    );
    assert.ok(!existsSync(join(out, LOCK_FILE)), "the stopped run took its lock with it");
  });

  it("an unusable --output_dir is one line, not a stack trace (exit 3)", () => {
    const file = join(tmp, "file");
    writeFileSync(file, "");
    for (const [dir, why] of [
      [file, "it is a file, not a folder"],
      ["/proc/tsmc-out", "it cannot be created there"],
    ]) {
      const r = run("train", "--output_dir", dir);
      assert.equal(r.status, 3, r.stderr);
      assert.deepEqual(said(r.stderr), [`twisted-smc: cannot use --output_dir ${dir}: ${why}`]);
    }
  });

  describe("on a full disk (a tiny tmpfs)", () => {
    let disk: TinyDisk | string = "not mounted";
    after(() => (typeof disk === "string" ? undefined : disk.unmount()));

    it("stops with one line and exit 4, keeping the last checkpoint whole; --resume with room finishes", function () {
      const done = join(tmp, "before-full");
      assert.equal(run("train", ...SMALL, "--num_epochs", "1", "--output_dir", done).status, 0);
      const size = statSync(join(done, "checkpoint.json")).size;
      // Room for the checkpoint, its metrics and the lock, not for the new checkpoint beside the old one.
      disk = mountTinyDisk(size + 32 * 1024);
      if (typeof disk === "string") return this.skip();
      const out = join(disk.dir, "run");
      cpSync(done, out, { recursive: true, filter: (src) => !src.endsWith("twist.json") });
      const before = readFileSync(join(out, "checkpoint.json"));

      const r = run("train", ...SMALL, "--num_epochs", "2", "--output_dir", out, "--resume");
      assert.equal(r.status, 4, r.stdout + r.stderr);
      assert.deepEqual(said(r.stderr), [
        `twisted-smc: cannot write checkpoint.json in ${out}: the disk holding ${out} is full; free some space there and run again (the previous checkpoint.json is unchanged)`,
      ]);
      assert.doesNotMatch(r.stdout, /Done/);
      assert.deepEqual(readFileSync(join(out, "checkpoint.json")), before);
      assert.ok(loadCheckpoint(join(out, "checkpoint.json"), openModelFolder(MODEL_DIR)));
      assert.deepEqual(readdirSync(out).sort(), ["checkpoint.json", "metrics.jsonl"], "no temp file, no lock left");

      // Space freed (here: the same folder on a roomy disk), --resume carries on from that checkpoint.
      const roomy = join(tmp, "after-full");
      cpSync(out, roomy, { recursive: true });
      const again = run("train", ...SMALL, "--num_epochs", "2", "--output_dir", roomy, "--resume");
      assert.equal(again.status, 0, again.stderr);
      assert.match(again.stdout, /resuming after batch 2/);
      assert.match(again.stdout, /Done: 4 batches/);
    });
  });
});
