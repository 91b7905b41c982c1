/** The status bar item: engine state, the device in use and the model; a click shows the details. */
import * as vscode from "vscode";
import { EngineClient, EngineState } from "./engineClient";

const ICONS: Record<EngineState, string> = {
  stopped: "$(circle-outline)",
  starting: "$(loading~spin)",
  ready: "$(pulse)",
  busy: "$(loading~spin)",
  crashed: "$(error)",
};

export function createStatusBar(engine: EngineClient): vscode.Disposable {
  const item = vscode.window.createStatusBarItem("twistedSmc.status", vscode.StatusBarAlignment.Right, 100);
  item.name = "Twisted SMC engine";
  item.command = "twistedSmc.showStatus";
  const render = () => {
    const s = engine.lastStatus;
    const device = s?.device ? s.device.split(" ")[0].toUpperCase().replace("WEBGPU", "WebGPU") : undefined;
    const model = s?.model ? s.model.split(/[\\/]/).pop() : undefined;
    item.text = `${ICONS[engine.state]} Twisted SMC${device ? `: ${device}` : ""}${model ? ` · ${model}` : ""}`;
    item.tooltip = `Engine ${engine.state}${s?.deviceChoice ? `\nDevice: ${s.deviceChoice}` : ""}${s?.model ? `\nModel: ${s.model}` : ""}\nClick for details`;
    item.backgroundColor = engine.state === "crashed" ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
  };
  render();
  item.show();
  const sub = engine.onDidChangeState(async (state) => {
    render();
    if (state === "ready") {
      await engine.status().catch(() => undefined);
      render();
    }
  });
  return vscode.Disposable.from(item, sub);
}
