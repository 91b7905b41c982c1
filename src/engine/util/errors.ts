import { basename, dirname } from "node:path";

/**
 * Errors about the user's inputs (a model folder, a twist file, a checkpoint, a data set): the CLI and
 * the engine server show their message alone, without a stack trace, since it says what to fix.
 */
export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The error codes a write fails with when the disk (or the user's quota on it) has no room left. */
const NO_SPACE = new Set(["ENOSPC", "EDQUOT"]);

/**
 * A write that failed for lack of space. Its message is one line naming the file and its folder and
 * saying to free space: the user's model, checkpoint and data are fine, the disk is not. The CLI exits
 * with code 4 on it.
 */
export class DiskFullError extends Error {
  constructor(
    readonly path: string,
    /** ENOSPC, EDQUOT, or "short" for a write that stopped making progress without an error. */
    readonly reason: "ENOSPC" | "EDQUOT" | "short",
    /** What the failure left as it was, e.g. "the previous checkpoint.json is unchanged". */
    note?: string,
  ) {
    const dir = dirname(path),
      name = basename(path);
    const cause = reason === "EDQUOT" ? `the disk quota for ${dir} is used up` : `the disk holding ${dir} is full`;
    super(`cannot write ${name} in ${dir}: ${cause}; free some space there and run again${note ? ` (${note})` : ""}`);
    this.name = new.target.name;
  }

  /** `e` as a DiskFullError about `path` when it is an out-of-space failure, else `e` itself. */
  static from(e: unknown, path: string, note?: string): unknown {
    if (e instanceof DiskFullError) return e;
    const code = (e as NodeJS.ErrnoException | undefined)?.code;
    return code && NO_SPACE.has(code) ? new DiskFullError(path, code as "ENOSPC" | "EDQUOT", note) : e;
  }
}
