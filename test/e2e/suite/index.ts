/**
 * Entry of the extension-host test run (VS Code's extensionTestsPath): runs the mocha suites bundled
 * next to this file inside the real extension host, and resolves or rejects with their outcome.
 */
import Mocha from "mocha";
import { join } from "node:path";

export function run(): Promise<void> {
  const mocha = new Mocha({ ui: "bdd", timeout: 120000, color: false, reporter: "spec" });
  mocha.addFile(join(__dirname, "solve.e2e.js"));
  return new Promise((resolve, reject) => {
    mocha.run((failures) => (failures ? reject(new Error(`${failures} extension-host test(s) failed`)) : resolve()));
  });
}
