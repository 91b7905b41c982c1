/**
 * A real, tiny disk for the disk-full tests: a tmpfs of a chosen size mounted on a fresh folder.
 * Mounting needs root and a sandbox that allows it; where it is refused, `mountTinyDisk` returns the
 * reason so the test can skip itself with it.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TinyDisk {
  dir: string;
  unmount(): void;
}

/** Mounts a tmpfs of `bytes` (rounded up to whole 4 KiB pages by the kernel); a string says why not. */
export function mountTinyDisk(bytes: number): TinyDisk | string {
  if (process.platform !== "linux") return "tmpfs mounts need Linux";
  const dir = mkdtempSync(join(tmpdir(), "tsmc-tiny-disk-"));
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${bytes}`, "tmpfs", dir], { encoding: "utf8" });
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return `cannot mount a tmpfs here (${(r.stderr || r.error?.message || `exit ${r.status}`).trim()})`;
  }
  return {
    dir,
    unmount: () => {
      spawnSync("umount", [dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
