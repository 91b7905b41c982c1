/**
 * Writes that never leave a half-written file: write a sibling temp file to the last byte, fsync it,
 * check its size, then rename it over the target and fsync the folder. A failure at any point leaves
 * the previous file as it was and removes the temp file; a failure for lack of space is a
 * DiskFullError, whose one line says to free space rather than calling the user's file corrupt.
 */
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { DiskFullError } from "./errors";
import { makeFolder } from "./makeFolder";
import { isProcessAlive } from "./processAlive";

/** The calls that can go short on a full disk; tests replace them to fake one. */
export interface AtomicWriteIo {
  /** Writes up to `length` bytes of `buffer` from `offset`; returns how many it wrote. */
  write(fd: number, buffer: Uint8Array, offset: number, length: number): number;
  /** The size of the open file. */
  size(fd: number): number;
}

const NODE_IO: AtomicWriteIo = {
  write: (fd, buffer, offset, length) => writeSync(fd, buffer, offset, length),
  size: (fd) => fstatSync(fd).size,
};

/** Temp files are `.NAME.PID.MILLISECONDS.tmp`: the pid tells whether their writer still runs. */
const tempPath = (path: string) => join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);

export function writeFileAtomic(path: string, data: string | Uint8Array, io: Partial<AtomicWriteIo> = {}): void {
  const { write, size } = { ...NODE_IO, ...io };
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  const dir = dirname(path);
  const replacing = existsSync(path);
  const note = replacing ? `the previous ${basename(path)} is unchanged` : undefined;
  let tmp: string | undefined;
  try {
    makeFolder(dir);
    // Before writing: a killed writer's leftover may be what filled the disk.
    removeStaleTemps(path);
    tmp = tempPath(path);
    const fd = openSync(tmp, "w");
    try {
      writeAll(fd, bytes, path, note, write);
      fsyncSync(fd);
      const written = size(fd);
      if (written !== bytes.length)
        throw new Error(
          `writing ${path}: the new copy holds ${written} of ${bytes.length} bytes, so it was not put in place${note ? ` (${note})` : ""}`,
        );
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    removeQuietly(tmp);
    throw DiskFullError.from(e, path, note);
  }
  fsyncFolder(dir);
}

/** Removes a temp file after a failure, never hiding that failure behind one of its own. */
function removeQuietly(tmp: string | undefined): void {
  try {
    if (tmp) rmSync(tmp, { force: true });
  } catch {
    // The leftover is removed by a later write of the same file once this process has ended (removeStaleTemps).
  }
}

/** writeSync may write less than asked (a nearly full disk does): carry on until all of it is written. */
function writeAll(fd: number, bytes: Uint8Array, path: string, note: string | undefined, write: AtomicWriteIo["write"]): void {
  for (let done = 0; done < bytes.length;) {
    const n = write(fd, bytes, done, bytes.length - done);
    // No error and no progress: the file system has no room left but did not say ENOSPC.
    if (!(n > 0)) throw new DiskFullError(path, "short", note);
    done += n;
  }
}

/** Removes temp files of `path` whose writer was killed before it could rename or remove them. */
function removeStaleTemps(path: string): void {
  const prefix = `.${basename(path)}.`;
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return; // A folder that can be written but not listed: nothing to tidy that we could see.
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = /^(\d+)\.\d+\.tmp$/.exec(name.slice(prefix.length))?.[1];
    if (pid === undefined || Number(pid) === process.pid || isProcessAlive(Number(pid))) continue;
    rmSync(join(dirname(path), name), { force: true });
  }
}

/** Makes the rename itself durable. Not every platform can open a folder (Windows cannot): best effort. */
function fsyncFolder(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // The data is written and in place; only a power cut in the next moments could undo the rename.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
