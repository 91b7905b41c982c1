/**
 * The FakeHub (test/unit/hubFixture.ts) as a process of its own, for the packaged-.vsix UI test
 * (ui.js), which is plain JavaScript and cannot import it:
 *
 *   node node_modules/tsx/dist/cli.mjs test/e2e/fakeHubServer.ts --repo acme/gated-math [--token hf_…] [--throttle BYTES_PER_S]
 *
 * serves one repository of the shipped model's files (shippedModelFiles) and prints one JSON line,
 * {"endpoint": "http://127.0.0.1:PORT"}. Then each line on stdin is a command answered by one JSON line
 * on stdout:
 *   throttle N   LFS file bodies at N bytes/s from now on (0: at once)  -> {"throttle": N}
 *   requests     every request so far                                   -> {"requests": [...]}
 * It serves until stdin closes (its parent went away) or it is killed.
 */
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { FakeHub, shippedModelFiles } from "../unit/hubFixture";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { repo: { type: "string" }, token: { type: "string" }, throttle: { type: "string" } },
  });
  if (!values.repo) throw new Error("--repo org/name is required");
  const hub = new FakeHub().add({ id: values.repo, commit: "e".repeat(40), files: shippedModelFiles(), token: values.token });
  hub.throttleBytesPerSecond = Number(values.throttle ?? 0) || undefined;
  const say = (o: unknown) => process.stdout.write(JSON.stringify(o) + "\n");
  say({ endpoint: await hub.start() });
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    const [command, arg] = line.trim().split(/\s+/);
    if (command === "throttle") {
      hub.throttleBytesPerSecond = Number(arg) || undefined;
      say({ throttle: hub.throttleBytesPerSecond ?? 0 });
    } else if (command === "requests") say({ requests: hub.requests });
    else if (command) say({ error: `unknown command: ${line.trim()}` });
  });
  lines.on("close", () => void hub.close().then(() => process.exit(0)));
}

main().catch((e) => {
  console.error(`fakeHubServer: ${(e as Error).message}`);
  process.exit(1);
});
