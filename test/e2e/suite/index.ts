/**
 * Entry of the extension-host test run (VS Code's extensionTestsPath): runs the mocha suites bundled
 * next to this file inside the real extension host, and resolves or rejects with their outcome.
 */
import Mocha from "mocha";
import { join } from "node:path";

export function run(): Promise<void> {
  const mocha = new Mocha({ ui: "bdd", timeout: 120000, color: false, reporter: "spec" });
  // The harness picks the suite: the normal one, or the one for an untrusted workspace.
  mocha.addFile(join(__dirname, `${process.env.TWISTED_SMC_E2E_SUITE ?? "solve"}.e2e.js`));
  return new Promise((resolve, reject) => {
    mocha.run((failures) => (failures ? reject(new Error(`${failures} extension-host test(s) failed`)) : resolve()));
  });
}
