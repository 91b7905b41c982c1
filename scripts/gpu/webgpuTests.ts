/**
 * The WebGPU test suite as one file for a GPU machine with no npm: mocha and the tests bundled by
 * scripts/gpu/prepare.sh into .gpu/tests/webgpu-tests.js (two folders below the repository root, so
 * the suite's paths resolve as they do from test/webgpu/). onnxruntime-node comes from NODE_PATH.
 */
import Mocha from "mocha";

const mocha = new Mocha({ timeout: 300000, reporter: "spec" });
mocha.suite.emit("pre-require", globalThis, "test/webgpu/webgpu.test.ts", mocha);
// Loaded after the globals exist: describe/it run as the module is evaluated.
// eslint-disable-next-line @typescript-eslint/no-require-imports -- a require, not an import: it must run after the line above
require("../../test/webgpu/webgpu.test");
mocha.run((failures) => {
  process.exitCode = failures ? 1 : 0;
});
