/**
 * Entry of the engine process. The transport comes from the command line, as language servers take it:
 * `--node-ipc` when the extension spawns it, `--stdio` by hand (`twisted-smc serve --stdio`).
 */
import { format } from "node:util";
import { Connection, createConnection, ProposedFeatures, StreamMessageReader, StreamMessageWriter } from "vscode-languageserver/node";
import { registerHandlers } from "./server";

export function serve(argv = process.argv.slice(2)): void {
  const connection = argv.includes("--stdio") ? stdioConnection() : createConnection(ProposedFeatures.all);
  registerHandlers(connection);
  connection.listen();
}

/**
 * The connection over standard input and output, built from a reader whose errors end it: the
 * library's own stdio reader reports a corrupt header (`Content-Length: abc`, bytes that are no header)
 * to no one and then waits for ever, so the engine hung silently. A stream that broke once cannot be
 * trusted to line up again, so any read error ends the process with one line and exit code 3.
 */
function stdioConnection(): Connection {
  const reader = new StreamMessageReader(process.stdin);
  const writer = new StreamMessageWriter(process.stdout);
  let shutdown = false;
  reader.onError((e) => {
    process.stderr.write(`twisted-smc: the engine's input is not a JSON-RPC stream: ${e.message.split("\n")[0]}; closing the connection\n`);
    process.exit(3);
  });
  // As the library's stdio connection does: the input ending is the end, clean after a shutdown request.
  reader.onClose(() => process.exit(shutdown ? 0 : 1));
  const connection = createConnection(ProposedFeatures.all, reader, writer);
  connection.onShutdown(() => {
    shutdown = true;
  });
  sendConsoleToClient(connection);
  return connection;
}

/**
 * Standard output carries the protocol, so console output goes to the client's log instead, as the
 * library's own stdio connection sends it (it does so only when it builds the connection itself).
 */
function sendConsoleToClient(connection: Connection): void {
  const remote = connection.console;
  console.log = (...args: unknown[]) => remote.log(format(...args));
  console.info = (...args: unknown[]) => remote.info(format(...args));
  console.debug = (...args: unknown[]) => remote.log(format(...args));
  console.warn = (...args: unknown[]) => remote.warn(format(...args));
  console.error = (...args: unknown[]) => remote.error(format(...args));
}
