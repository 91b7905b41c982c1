/**
 * Solve with Twisted SMC: find the problem (selection, or the block under the cursor), run the engine
 * with a cancellable progress notification, and write the result after the problem as one undoable
 * edit — after the same problem even if the document changed meanwhile.
 */
import * as vscode from "vscode";
import type { SolveResultMessage } from "../protocol/protocol";
import { modelSettings, smcSettings } from "./config";
import { EngineClient } from "./engineClient";
import { allProblems, formatResult, looksLikeMathProblem, planResultInsertion, plainText, problemAt, ProblemSpan } from "./markdown";
import { ParticlePanel } from "./panel";
import { RunStore } from "./runStore";

export const OPEN_RUN_COMMAND = "twistedSmc.openRun";

/** The problem the user means: the selection, else the block under the cursor. */
export function targetProblem(editor: vscode.TextEditor): ProblemSpan | string {
  const doc = editor.document;
  const text = doc.getText();
  const sel = editor.selection;
  let span: ProblemSpan | undefined;
  if (!sel.isEmpty) {
    const start = doc.offsetAt(sel.start), end = doc.offsetAt(sel.end);
    span = { start, end, text: plainText(text.slice(start, end)) };
  } else {
    span = problemAt(text, doc.offsetAt(sel.active));
  }
  if (!span || !span.text) return "Select a math word problem, or put the cursor inside one, then run Solve with Twisted SMC.";
  if (!looksLikeMathProblem(span.text)) return `"${span.text.slice(0, 60)}" does not look like a math word problem (it needs a few words and at least one number).`;
  return span;
}

export async function solveSpan(engine: EngineClient, runs: RunStore, panel: ParticlePanel, doc: vscode.TextDocument, span: ProblemSpan, title: string): Promise<SolveResultMessage | undefined> {
  const runId = runs.newRunId();
  runs.begin(runId, span.text);
  void panel.show(runId, true);
  let result: SolveResultMessage;
  try {
    result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title, cancellable: true },
      async (progress, token) => {
        const sub = engine.onStep((s) => {
          if (s.runId !== runId) return;
          runs.step(runId, s.step);
          progress.report({ message: `step ${s.step.step + 1}, ESS ${s.step.ess.toFixed(1)}` });
        });
        try {
          return await engine.solve({ runId, problem: span.text, model: modelSettings(), smc: smcSettings() }, token);
        } finally {
          sub.dispose();
        }
      },
    );
  } catch (e) {
    runs.fail(runId, (e as Error).message);
    if (/cancel/i.test((e as Error).message)) {
      void vscode.window.showInformationMessage("Twisted SMC: cancelled.");
      return undefined;
    }
    void vscode.window.showErrorMessage(`Twisted SMC: ${(e as Error).message}`);
    return undefined;
  }
  runs.finish(runId, result);
  const openRun = `command:${OPEN_RUN_COMMAND}?${encodeURIComponent(JSON.stringify([runId]))}`;
  const block = formatResult({ answer: result.answer, probability: result.probability, particles: result.particles.length, level: result.level, twist: result.twist, openRunUri: openRun });
  const plan = planResultInsertion(doc.getText(), span, block);
  if (!plan) {
    void vscode.window.showWarningMessage(`Twisted SMC: the problem was changed or removed while solving; the answer (${result.answer ?? "none"}) is kept with the run.`, "Open Run").then((pick) => {
      if (pick) void vscode.commands.executeCommand(OPEN_RUN_COMMAND, runId);
    });
    return result;
  }
  const edit = new vscode.WorkspaceEdit();
  edit.replace(doc.uri, new vscode.Range(doc.positionAt(plan.start), doc.positionAt(plan.end)), plan.text);
  await vscode.workspace.applyEdit(edit);
  return result;
}

export function registerSolveCommands(context: vscode.ExtensionContext, engine: EngineClient, runs: RunStore, panel: ParticlePanel): void {
  context.subscriptions.push(
    vscode.commands.registerCommand("twistedSmc.solve", async (uri?: vscode.Uri, offset?: number) => {
      const editor = vscode.window.activeTextEditor;
      if (!editor) return void vscode.window.showWarningMessage("Twisted SMC: open a Markdown file with a math word problem first.");
      // From a CodeLens: solve the problem at that offset.
      if (uri && typeof offset === "number" && editor.document.uri.toString() === uri.toString()) {
        editor.selection = new vscode.Selection(editor.document.positionAt(offset), editor.document.positionAt(offset));
      }
      const target = targetProblem(editor);
      if (typeof target === "string") return void vscode.window.showWarningMessage(`Twisted SMC: ${target}`);
      await solveSpan(engine, runs, panel, editor.document, target, "Twisted SMC: solving…");
    }),
    vscode.commands.registerCommand("twistedSmc.solveAll", async () => {
      const editor = vscode.window.activeTextEditor;
      if (!editor) return;
      const problems = allProblems(editor.document.getText());
      if (!problems.length) return void vscode.window.showWarningMessage("Twisted SMC: no math word problems found in this file.");
      for (const [i, p] of problems.entries()) {
        const solved = await solveSpan(engine, runs, panel, editor.document, p, `Twisted SMC: problem ${i + 1} of ${problems.length}…`);
        if (!solved) break;
      }
    }),
  );
}
