/**
 * The particle panel (a webview view): streams the runs of this workspace as the engine computes them,
 * and the loss of a training run. Posts go through a MessageBuffer, so nothing is lost while the view
 * loads or is hidden; on every "ready" the view is rebuilt from the run history.
 */
import * as vscode from "vscode";
import type { PanelRun, PanelToWebview, TrainPoint, WebviewToPanel } from "../protocol/panelMessages";
import { MessageBuffer } from "./messageBuffer";
import { Run, RunChange, RunStore } from "./runStore";

export const PANEL_VIEW = "twistedSmc.particles";

export function toPanelRun(r: Run): PanelRun {
  const res = r.result;
  return {
    id: r.id,
    problem: r.problem,
    started: r.started,
    steps: r.steps,
    error: r.error,
    result: res && {
      answer: res.answer,
      probability: res.probability,
      posterior: res.posterior,
      confidence: res.confidence,
      level: res.level,
      twist: res.twist,
      particles: res.particles.map((p) => ({ answer: p.answer, logWeight: p.logWeight })),
    },
  };
}

function nonce(): string {
  const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  return Array.from({ length: 32 }, () => chars[Math.floor(Math.random() * chars.length)]).join("");
}

export class ParticlePanel implements vscode.WebviewViewProvider, vscode.Disposable {
  private view?: vscode.WebviewView;
  private readonly buffer: MessageBuffer<PanelToWebview>;
  private readonly subscriptions: vscode.Disposable[] = [];
  private focusRun?: string;
  private train: TrainPoint[] = [];

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly runs: RunStore,
  ) {
    this.buffer = new MessageBuffer<PanelToWebview>(
      (m) => this.view?.webview.postMessage(m) ?? false,
      () => {
        const snapshot: PanelToWebview[] = [{ type: "runs", runs: this.runs.all().map(toPanelRun) }];
        const focused = this.focusRun && this.runs.get(this.focusRun);
        if (focused) snapshot.push({ type: "run", run: toPanelRun(focused), focus: true });
        if (this.train.length) snapshot.push({ type: "train", points: this.train, reset: true });
        return snapshot;
      },
    );
    this.subscriptions.push(runs.onDidChange((e) => this.onRunChange(e)));
  }

  private onRunChange(e: RunChange): void {
    if (e.step) this.buffer.post({ type: "step", runId: e.run.id, step: e.step });
    else this.buffer.post({ type: "run", run: toPanelRun(e.run), focus: e.run.id === this.focusRun });
  }

  /** Shows a run in the panel and reveals the panel; `keepFocus` leaves the keyboard in the editor. */
  async show(runId: string, keepFocus = false): Promise<void> {
    this.focusRun = runId;
    const run = this.runs.get(runId);
    if (run) this.buffer.post({ type: "run", run: toPanelRun(run), focus: true });
    if (this.view) this.view.show(keepFocus);
    else {
      await vscode.commands.executeCommand(`${PANEL_VIEW}.focus`);
      if (keepFocus) await vscode.commands.executeCommand("workbench.action.focusActiveEditorGroup");
    }
  }

  trainProgress(point: TrainPoint, reset: boolean): void {
    if (reset) this.train = [];
    this.train.push(point);
    this.buffer.post({ type: "train", points: [point], reset });
  }

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    const media = vscode.Uri.joinPath(this.extensionUri, "media");
    view.webview.options = { enableScripts: true, localResourceRoots: [media] };
    const n = nonce();
    const script = view.webview.asWebviewUri(vscode.Uri.joinPath(media, "panel.js"));
    const style = view.webview.asWebviewUri(vscode.Uri.joinPath(media, "panel.css"));
    const csp = `default-src 'none'; img-src ${view.webview.cspSource} data:; style-src ${view.webview.cspSource}; script-src 'nonce-${n}'; font-src ${view.webview.cspSource};`;
    view.webview.html = `<!DOCTYPE html><html lang="en"><head><meta charset="UTF-8"><meta http-equiv="Content-Security-Policy" content="${csp}"><meta name="viewport" content="width=device-width, initial-scale=1.0"><link href="${style}" rel="stylesheet"><title>Particles</title></head><body><div id="root" aria-live="polite"></div><script nonce="${n}" src="${script}"></script></body></html>`;
    this.subscriptions.push(
      view.webview.onDidReceiveMessage((m: WebviewToPanel) => {
        if (m.type === "ready") this.buffer.ready();
        else if (m.type === "selectRun") this.focusRun = m.runId;
      }),
      view.onDidChangeVisibility(() => {
        if (!view.visible) this.buffer.pause();
      }),
      view.onDidDispose(() => {
        this.buffer.pause();
        this.view = undefined;
      }),
    );
  }

  dispose(): void {
    for (const s of this.subscriptions) s.dispose();
  }
}
