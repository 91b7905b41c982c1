/** Every command the extension contributes, as one table of handlers by id (see package.json). */
import * as vscode from "vscode";

// Handlers take what VS Code passes them (a CodeLens's arguments, a command URI's JSON list).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type CommandTable = Record<string, (...args: any[]) => unknown>;

/** Registers each command of the tables once; a duplicate id is a bug in the tables. */
export function registerCommands(...tables: CommandTable[]): vscode.Disposable[] {
  const ids = new Set<string>();
  const out: vscode.Disposable[] = [];
  for (const table of tables) {
    for (const [id, run] of Object.entries(table)) {
      if (ids.has(id)) throw new Error(`command ${id} is registered twice`);
      ids.add(id);
      out.push(vscode.commands.registerCommand(id, run));
    }
  }
  return out;
}
