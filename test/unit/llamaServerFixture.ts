/**
 * llama.cpp's llama-server serving the shipped model, for the tests of the remote proposal backend
 * (issue 20): the model converted to GGUF by the committed recipe (scripts/llama-server/convert.sh),
 * the server run from the Debian unstable root scripts/llama-server/setup.sh builds, on a free port of
 * 127.0.0.1, healthy before the suite starts and stopped after it.
 *
 * Without the root (or as a user who cannot chroot) a suite skips, unless
 * TWISTED_SMC_REQUIRE_LLAMA_SERVER=1: then it fails. LLAMA_SERVER_ROOT names another root.
 */
import { join } from "node:path";
import { LlamaServer, llamaServerMissing } from "../../scripts/llama-server/llamaServer";

export { freePort, LlamaServer, llamaServerMissing } from "../../scripts/llama-server/llamaServer";

const REQUIRED = process.env.TWISTED_SMC_REQUIRE_LLAMA_SERVER === "1";

/**
 * Skips the calling suite (`ctx` is mocha's `this` in a `before`) when llama-server cannot run here,
 * else converts the shipped model and starts the server, resolving once GET /health answers 200.
 */
export async function startLlamaServer(ctx: Mocha.Context, extraArgs: string[] = []): Promise<LlamaServer> {
  const why = llamaServerMissing();
  if (why) {
    if (REQUIRED) throw new Error(`TWISTED_SMC_REQUIRE_LLAMA_SERVER=1 but ${why}`);
    console.log(`      skipped: ${why}`);
    ctx.skip();
  }
  return LlamaServer.start(join(__dirname, "../.."), extraArgs);
}
