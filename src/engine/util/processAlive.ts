/**
 * Whether a process id belongs to a running process on this machine: signal 0 checks without
 * sending anything. ESRCH means no such process; EPERM means it runs as another user, so it is alive.
 * Used to tell leftovers of killed runs (stale temp files and locks) from those of live ones.
 */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
