/**
 * Entry of the engine process. The transport comes from the command line, as language servers take it:
 * `--node-ipc` when the extension spawns it, `--stdio` by hand (`twisted-smc serve --stdio`).
 */
import { createConnection, ProposedFeatures } from "vscode-languageserver/node";
import { registerHandlers } from "./server";

export function serve(): void {
  const connection = createConnection(ProposedFeatures.all);
  registerHandlers(connection);
  connection.listen();
}
