/** The engine's commands run as a user runs them: `eval` on 2 problems at K = 4 with a token twist and no step twist, `solve` as JSON. */
import { spawnSync, SpawnSyncReturns } from "node:child_process";
import { join } from "node:path";

export function evalWithTokenTwist(file: string): SpawnSyncReturns<string> {
  const args = [
    "eval",
    "--n",
    "2",
    "--particles",
    "4",
    "--json",
    "--token-twist",
    file,
    "--step-twist",
    "none",
    "--no-bounds",
    "--threads",
    "1",
  ];
  return spawnSync(process.execPath, ["--import", "tsx", join(__dirname, "../../src/engine/cli/main.ts"), ...args], {
    encoding: "utf8",
    timeout: 240000,
  });
}

/** The engine's `solve` command on one problem, as JSON, with the flags given. */
export function solveJson(problem: string, flags: string[]): SpawnSyncReturns<string> {
  return spawnSync(
    process.execPath,
    ["--import", "tsx", join(__dirname, "../../src/engine/cli/main.ts"), "solve", problem, "--json", ...flags],
    {
      encoding: "utf8",
      timeout: 240000,
    },
  );
}
