/**
 * One training per output folder: `train.lock` in --output_dir holds the owner's pid (and host), made
 * with the exclusive flag so that of two runs starting together exactly one gets it. Two runs in one
 * folder would interleave metrics.jsonl and overwrite each other's checkpoints.
 *
 * Taking the lock is also the up-front proof that the folder can be made and written to, before any
 * model is loaded. The lock goes when the run ends (normally, by an error, or when a signal ends the
 * process: an exit handler); a lock whose process is gone (killed with SIGKILL, a crash) is stale and
 * is taken over.
 */
import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { DiskFullError, InputError } from "../util/errors";
import { makeFolder } from "../util/makeFolder";
import { isProcessAlive } from "../util/processAlive";

export const LOCK_FILE = "train.lock";

/** An --output_dir that cannot be used: not a folder, not writable, or in use by another run. */
export class OutputDirError extends InputError {}

interface LockOwner {
  pid: number;
  host: string;
  started: string;
}

/** Takes the lock of `dir` (making the folder); returns the function that releases it. */
export function lockOutputDir(dir: string): () => void {
  try {
    makeFolder(dir);
  } catch (e) {
    throw unusable(dir, e);
  }
  const path = join(dir, LOCK_FILE);
  const created = create(path) ?? (takeOverIfStale(path, dir), create(path));
  // Lost a race for a stale lock to another run that took it over first.
  if (!created) throw inUse(dir, readOwner(path));
  const release = () => {
    process.off("exit", release);
    try {
      // Only our own lock: after a takeover the file may be another run's.
      if (statSync(path).ino === created.ino && readOwner(path)?.pid === process.pid) rmSync(path, { force: true });
    } catch {
      // Already gone.
    }
  };
  // A second Ctrl-C exits at once (trainCommand); exit handlers still run, so the lock goes with it.
  process.on("exit", release);
  return release;
}

/** Creates the lock file with our pid, or returns undefined when it exists. */
function create(path: string): { ino: number } | undefined {
  let fd: number;
  try {
    fd = openSync(path, "wx");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return undefined;
    throw unusable(join(path, ".."), e);
  }
  try {
    const owner: LockOwner = { pid: process.pid, host: hostname(), started: new Date().toISOString() };
    writeSync(fd, JSON.stringify(owner) + "\n");
    return { ino: statSync(path).ino };
  } catch (e) {
    rmSync(path, { force: true });
    throw unusable(join(path, ".."), e);
  } finally {
    closeSync(fd);
  }
}

/** Removes the lock when its owner is gone; refuses when it may still run. */
function takeOverIfStale(path: string, dir: string): void {
  const owner = readOwner(path);
  // An unreadable lock is one whose writer died between creating and writing it.
  if (owner && (owner.host !== hostname() || isProcessAlive(owner.pid))) throw inUse(dir, owner);
  rmSync(path, { force: true });
}

function readOwner(path: string): LockOwner | undefined {
  try {
    const owner = JSON.parse(readFileSync(path, "utf8"));
    return Number.isInteger(owner?.pid) && typeof owner.host === "string" ? owner : undefined;
  } catch {
    return undefined;
  }
}

function inUse(dir: string, owner: LockOwner | undefined): OutputDirError {
  const who = owner
    ? `process ${owner.pid}${owner.host !== hostname() ? ` on ${owner.host}` : ""}, started ${owner.started}`
    : "another process";
  const remote = owner && owner.host !== hostname() ? `; if it no longer runs, delete ${join(dir, LOCK_FILE)}` : "";
  return new OutputDirError(
    `--output_dir ${dir} is in use by another training (${who}): wait for it to end or choose another --output_dir${remote}`,
  );
}

/** Why the folder cannot be made or written, in one line (a full disk keeps its own error). */
function unusable(dir: string, e: unknown): Error {
  const full = DiskFullError.from(e, join(dir, LOCK_FILE));
  if (full !== e) return full as DiskFullError;
  const err = e as NodeJS.ErrnoException;
  const why: Record<string, string> = {
    EACCES: "permission denied",
    EPERM: "permission denied",
    EROFS: "the file system is read-only",
    ENOTDIR: "a file is in the way on its path",
    EEXIST: "it is a file, not a folder",
    ENOENT: "it cannot be created there",
  };
  return new OutputDirError(`cannot use --output_dir ${dir}: ${why[err.code ?? ""] ?? err.message}`);
}
