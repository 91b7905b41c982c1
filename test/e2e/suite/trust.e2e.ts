/**
 * In an untrusted workspace (limited support): the workspace cannot point the engine at its own model
 * or twist files, and no training task is offered; solving with the shipped model still works.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as vscode from "vscode";
import type { ExtensionApi } from "../../../src/extension/extension";
import { RESULT_MARKER } from "../../../src/extension/markdown";

const PROBLEM = "Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?";

describe("Twisted SMC in an untrusted workspace", () => {
  let api: ExtensionApi;
  before(async () => {
    api = (await vscode.extensions.getExtension("twisted-smc.twisted-smc-math")!.activate()) as ExtensionApi;
  });

  it("runs in restricted mode", () => {
    assert.equal(vscode.workspace.isTrusted, false);
  });

  it("ignores the workspace's model, twist, backend and server settings and solves with the shipped model here", async () => {
    const folder = vscode.workspace.workspaceFolders![0].uri.fsPath;
    mkdirSync(join(folder, ".vscode"), { recursive: true });
    writeFileSync(
      join(folder, ".vscode/settings.json"),
      JSON.stringify({
        "twistedSmc.model": "/nonexistent/evil-model",
        "twistedSmc.twist": "/nonexistent/evil-twist.json",
        "twistedSmc.particles": 8,
        // A workspace must not send the problems, and the user's API key, to a server it chose.
        "twistedSmc.backend": "openai",
        "twistedSmc.server.url": "http://127.0.0.1:9/evil",
        "twistedSmc.server.model": "evil",
      }),
    );
    writeFileSync(join(folder, "untrusted.md"), `${PROBLEM}\n`);
    // The workspace's settings are read (its particle count applies), its model and twist are not.
    const seen = Date.now() + 20000;
    while (vscode.workspace.getConfiguration("twistedSmc").get<number>("particles") !== 8 && Date.now() < seen)
      await new Promise((r) => setTimeout(r, 100));
    assert.equal(vscode.workspace.getConfiguration("twistedSmc").get<number>("particles"), 8);
    const editor = await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(join(folder, "untrusted.md")));
    editor.selection = new vscode.Selection(new vscode.Position(0, 2), new vscode.Position(0, 2));
    await vscode.commands.executeCommand("twistedSmc.solve");
    const end = Date.now() + 60000;
    while (!editor.document.getText().includes(RESULT_MARKER) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    assert.ok(editor.document.getText().includes(RESULT_MARKER), "solved with the shipped model despite the workspace settings");
    assert.match(editor.document.getText(), /8 particles/);
    assert.equal(vscode.workspace.getConfiguration("twistedSmc").get<string>("server.url"), "", "a machine setting: no workspace value");
    const result = api.runs.all()[0].result;
    assert.notEqual(result?.device, "server");
    assert.equal(result?.server, undefined);
    assert.doesNotMatch(api.statusBar.text, /server|evil/);
  });

  it("offers no training task, and Start Training says why instead of running one", async () => {
    // (vscode.tasks.fetchTasks itself would ask the user for trust first.)
    assert.deepEqual(api.tasks.provideTasks(), []);
    await vscode.commands.executeCommand("twistedSmc.startTraining");
    assert.equal(vscode.tasks.taskExecutions.length, 0);
  });
});
