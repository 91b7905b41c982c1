/**
 * mkdir -p that always ends. Node's own recursive mkdirSync spins forever on a path it can never make
 * (e.g. /proc/x on Node 20: mkdir says ENOENT, the parent exists, it tries again), which turned
 * `train --output_dir /proc/x` into a hang. Here each folder is made once, parents first; a second
 * failure is thrown as it is.
 */
import { mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";

export function makeFolder(dir: string): void {
  try {
    mkdirSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST" && statSync(dir).isDirectory()) return;
    if (code !== "ENOENT" || dirname(dir) === dir) throw e;
    makeFolder(dirname(dir));
    try {
      mkdirSync(dir);
    } catch (again) {
      // Made by another process in the meantime: as good as made here.
      if ((again as NodeJS.ErrnoException).code !== "EEXIST" || !statSync(dir).isDirectory()) throw again;
    }
  }
}
