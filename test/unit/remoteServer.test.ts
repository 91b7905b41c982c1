/**
 * The editor's side of the openai backend without VS Code (src/extension/remoteServer.ts): the engine's
 * environment gets the stored API key and nothing else changes, a server is named without credentials,
 * and the engine's error codes tell a server failure from a refusal.
 */
import assert from "node:assert/strict";
import { ResponseError } from "vscode-languageserver";
import { ErrorCodes } from "../../src/protocol/protocol";
import { describeServer, engineEnv, serverLabel, solveFailure, urlWithoutCredentials } from "../../src/extension/remoteServer";

describe("the editor's openai backend pieces", () => {
  it("gives the engine the stored key as OPENAI_API_KEY, over the parent's, and leaves the parent's alone without one", () => {
    const parent = { PATH: "/bin", OPENAI_API_KEY: "from-env" };
    assert.deepEqual(engineEnv(parent, "stored"), { PATH: "/bin", OPENAI_API_KEY: "stored" });
    assert.equal(parent.OPENAI_API_KEY, "from-env", "the extension host's own environment is not changed");
    assert.equal(engineEnv(parent, undefined), undefined, "no stored key: the engine inherits the environment as it is");
    assert.equal(engineEnv(parent, "  "), undefined);
    assert.equal(engineEnv({}, " k ")!.OPENAI_API_KEY, "k");
  });

  it("names a server by host, port and model, never with credentials", () => {
    assert.equal(serverLabel("http://127.0.0.1:8080/v1/completions (qwen)"), "127.0.0.1:8080 (qwen)");
    assert.equal(serverLabel("https://host.example/v1/completions"), "host.example");
    assert.equal(serverLabel("no URL set"), "no URL set");
    assert.equal(urlWithoutCredentials("https://user:secret@host.example/v1"), "https://host.example/v1");
    assert.equal(describeServer({ url: "http://me:pw@127.0.0.1:18080", model: "tiny" }), "http://127.0.0.1:18080/ (tiny)");
    assert.equal(serverLabel(describeServer({ url: "http://me:pw@127.0.0.1:18080", model: "tiny" })), "127.0.0.1:18080 (tiny)");
    assert.equal(describeServer({ url: " ", model: "" }), "no URL set");
  });

  it("tells the server's failure from a refusal, a cancel and anything else", () => {
    assert.equal(solveFailure(new ResponseError(ErrorCodes.serverError, "the inference server failed: http://127.0.0.1:1/…")), "server");
    assert.equal(solveFailure(new ResponseError(ErrorCodes.inputError, "token level needs the local backend")), "input");
    assert.equal(solveFailure(new ResponseError(ErrorCodes.cancelled, "cancelled")), "cancelled");
    assert.equal(solveFailure(new Error("Canceled")), "cancelled");
    assert.equal(solveFailure(new Error("The Twisted SMC engine stopped while working")), "other");
    assert.equal(solveFailure(undefined), "other");
  });
});
