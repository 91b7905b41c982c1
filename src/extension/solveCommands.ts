/**
 * Solve with Twisted SMC: find the problem (selection, or the block under the cursor), run the engine
 * with a cancellable progress notification, and write the result after the problem as one undoable
 * edit — after the same problem even if the document changed meanwhile.
 */
import * as vscode from "vscode";
import type { SolveResultMessage } from "../protocol/protocol";
import { modelSettings, SECTION, smcSettings } from "./config";
import { EngineClient } from "./engineClient";
import { allProblems, formatResult, looksLikeMathProblem, planResultInsertion, plainText, problemAt, ProblemSpan } from "./markdown";
import { ParticlePanel } from "./panel";
import { RunStore } from "./runStore";
import { solveFailure } from "./remoteServer";
import type { CommandTable } from "./commandTable";
import { DOWNLOAD_MODEL_COMMAND } from "./downloadModel";

const DOWNLOAD_MODEL_ACTION = "Download Model…";

export const OPEN_RUN_COMMAND = "twistedSmc.openRun";

/** The problem the user means: the selection, else the block under the cursor. */
export function targetProblem(editor: vscode.TextEditor): ProblemSpan | string {
  const doc = editor.document;
  const text = doc.getText();
  const sel = editor.selection;
  let span: ProblemSpan | undefined;
  if (!sel.isEmpty) {
    const start = doc.offsetAt(sel.start),
      end = doc.offsetAt(sel.end);
    span = { start, end, text: plainText(text.slice(start, end)) };
  } else {
    span = problemAt(text, doc.offsetAt(sel.active));
  }
  if (!span || !span.text) return "Select a math word problem, or put the cursor inside one, then run Solve with Twisted SMC.";
  if (!looksLikeMathProblem(span.text))
    return `"${span.text.slice(0, 60)}" does not look like a math word problem (it needs a few words and at least one number).`;
  return span;
}

export async function solveSpan(
  engine: EngineClient,
  runs: RunStore,
  panel: ParticlePanel,
  doc: vscode.TextDocument,
  span: ProblemSpan,
  title: string,
  /** Says why the solve failed (default: a message for the user); Solve All shows one of several. */
  reportFailure: (e: unknown) => void = showSolveFailure,
): Promise<SolveResultMessage | undefined> {
  const runId = runs.newRunId();
  runs.begin(runId, span.text, { uri: doc.uri.toString(), start: span.start, end: span.end });
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
    // Only this run fails: earlier runs, their answers in the document and the engine stay as they are.
    runs.fail(runId, (e as Error).message);
    reportFailure(e);
    return undefined;
  }
  runs.finish(runId, result);
  for (const warning of result.warnings ?? []) void vscode.window.showWarningMessage(`Twisted SMC: ${warning}`);
  if (result.confidence.outOfDepth) suggestRealModel(result.confidence.outOfDepth);
  const failure = await insertResult(doc.uri, span, resultBlock(result, runId));
  if (failure) offerToInsert(runs, runId, failure);
  return result;
}

export const OPEN_SERVER_SETTINGS_ACTION = "Open Settings";

/**
 * Says why a solve failed: the inference server's failure (the engine's line names its URL) with a way
 * to its settings; a refusal of the settings (token level on a server…) as any input error; a cancel quietly.
 */
function showSolveFailure(e: unknown): void {
  const message = (e as Error).message;
  switch (solveFailure(e)) {
    case "cancelled":
      void vscode.window.showInformationMessage("Twisted SMC: cancelled.");
      return;
    case "server":
      void vscode.window
        .showErrorMessage(`Twisted SMC: ${message}`, OPEN_SERVER_SETTINGS_ACTION)
        .then((pick) => pick && vscode.commands.executeCommand("workbench.action.openSettings", `${SECTION}.server`));
      return;
    default:
      void vscode.window.showErrorMessage(`Twisted SMC: ${message}`);
  }
}

/** Whether this session has already suggested downloading a model (once is enough). */
let suggestedRealModel = false;

/** The model is out of its depth (the shipped demo model on a real problem): offer Download Model…, once per session. */
function suggestRealModel(why: string): void {
  if (suggestedRealModel) return;
  suggestedRealModel = true;
  void vscode.window
    .showInformationMessage(`Twisted SMC: ${why}`, DOWNLOAD_MODEL_ACTION)
    .then((pick) => pick && vscode.commands.executeCommand(DOWNLOAD_MODEL_COMMAND));
}

export const INSERT_ANSWER_COMMAND = "twistedSmc.insertAnswer";

function resultBlock(result: SolveResultMessage, runId: string): string {
  const openRun = `command:${OPEN_RUN_COMMAND}?${encodeURIComponent(JSON.stringify([runId]))}`;
  return formatResult({
    answer: result.answer,
    probability: result.probability,
    confidence: result.confidence,
    particles: result.particles.length,
    level: result.level,
    twist: result.twist,
    openRunUri: openRun,
  });
}

/**
 * Writes the result block after the problem in the document as it is now. VS Code refuses an edit
 * when the document changed between planning and applying it (the user typing), so on a refusal it
 * waits for a pause in the typing and plans again, for a while; returns why it could not be written,
 * or undefined once it is in.
 */
async function insertResult(uri: vscode.Uri, span: ProblemSpan, block: string): Promise<string | undefined> {
  const deadline = Date.now() + 15000;
  do {
    const doc = await vscode.workspace.openTextDocument(uri);
    const plan = planResultInsertion(doc.getText(), span, block);
    if (!plan) return "the problem was changed or removed while solving";
    const edit = new vscode.WorkspaceEdit();
    edit.replace(uri, new vscode.Range(doc.positionAt(plan.start), doc.positionAt(plan.end)), plan.text);
    if (await vscode.workspace.applyEdit(edit)) return undefined;
    await pauseInEdits(uri, 30, 1000);
  } while (Date.now() < deadline);
  return "the document kept changing while the answer was being written";
}

/** Resolves once `uri` has gone `quietMs` without a change, or after `maxMs` at most. */
function pauseInEdits(uri: vscode.Uri, quietMs: number, maxMs: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(quiet);
      clearTimeout(cap);
      sub.dispose();
      resolve();
    };
    let quiet = setTimeout(done, quietMs);
    const cap = setTimeout(done, maxMs);
    const sub = vscode.workspace.onDidChangeTextDocument((e) => {
      if (e.document.uri.toString() !== uri.toString()) return;
      clearTimeout(quiet);
      quiet = setTimeout(done, quietMs);
    });
  });
}

/** An answer that could not be written stays with its run; the user is told and can insert it. */
function offerToInsert(runs: RunStore, runId: string, why: string): void {
  const answer = runs.get(runId)?.result?.answer ?? "none";
  runs.markUninserted(runId, why);
  void vscode.window
    .showWarningMessage(
      `Twisted SMC: the answer (${answer}) was not written into the document: ${why}. It is kept with the run.`,
      "Insert Answer",
      "Open Run",
    )
    .then((pick) => {
      if (pick === "Insert Answer") void vscode.commands.executeCommand(INSERT_ANSWER_COMMAND, runId);
      if (pick === "Open Run") void vscode.commands.executeCommand(OPEN_RUN_COMMAND, runId);
    });
}

/**
 * Inserts a finished run's answer: after its problem when the problem is still in its document, else
 * at the cursor of the active editor (the user has put it where the answer should go).
 */
export async function insertAnswer(runs: RunStore, runId?: string): Promise<void> {
  const run = runId ? runs.get(runId) : (runs.all().find((r) => r.uninserted) ?? runs.all().find((r) => r.result));
  if (!run?.result) return void vscode.window.showWarningMessage("Twisted SMC: that run has no answer to insert.");
  const block = resultBlock(run.result, run.id);
  if (run.document) {
    const failure = await insertResult(
      vscode.Uri.parse(run.document.uri),
      { start: run.document.start, end: run.document.end, text: run.problem },
      block,
    );
    if (!failure) return runs.markInserted(run.id);
  }
  const editor = vscode.window.activeTextEditor;
  if (!editor)
    return void vscode.window
      .showWarningMessage(
        "Twisted SMC: the problem is no longer in its document; put the cursor where the answer should go, then run Insert Answer again.",
        "Open Run",
      )
      .then((pick) => pick && vscode.commands.executeCommand(OPEN_RUN_COMMAND, run.id));
  const at = editor.selection.active;
  if (await editor.edit((b) => b.insert(at, `\n\n${block}\n`))) runs.markInserted(run.id);
  else void vscode.window.showWarningMessage("Twisted SMC: the document changed while inserting; run Insert Answer again.");
}

/** Problems Solve All keeps in flight on an inference server (twistedSmc.backend openai). */
export const SOLVE_ALL_ON_SERVER = 4;

/** The solve commands' handlers, by command id (extension.ts registers every command from one table). */
export function solveCommands(engine: EngineClient, runs: RunStore, panel: ParticlePanel): CommandTable {
  /** Documents a Solve All is working through. */
  const solvingAll = new Set<string>();
  return {
    "twistedSmc.solve": async (uri?: vscode.Uri, offset?: number) => {
      const editor = vscode.window.activeTextEditor;
      if (!editor) return void vscode.window.showWarningMessage("Twisted SMC: open a Markdown file with a math word problem first.");
      // From a CodeLens: solve the problem at that offset.
      if (uri && typeof offset === "number" && editor.document.uri.toString() === uri.toString()) {
        editor.selection = new vscode.Selection(editor.document.positionAt(offset), editor.document.positionAt(offset));
      }
      const target = targetProblem(editor);
      if (typeof target === "string") return void vscode.window.showWarningMessage(`Twisted SMC: ${target}`);
      await solveSpan(engine, runs, panel, editor.document, target, "Twisted SMC: solving…");
    },
    "twistedSmc.solveAll": async () => {
      const editor = vscode.window.activeTextEditor;
      if (!editor) return;
      const key = editor.document.uri.toString();
      // Two passes over one file would solve each problem twice and race to write the answers.
      if (solvingAll.has(key))
        return void vscode.window.showWarningMessage(
          "Twisted SMC: Solve All is already running on this file; wait for it, or cancel it from its notification.",
        );
      const problems = allProblems(editor.document.getText());
      if (!problems.length) return void vscode.window.showWarningMessage("Twisted SMC: no math word problems found in this file.");
      solvingAll.add(key);
      // On a server, several problems at once so that it batches their lines; here, one at a time
      // (the model already uses every core). The first failure or cancel starts no more problems;
      // those already running finish, and only the first failure is shown (a dead server fails them all).
      const atOnce = modelSettings().backend === "openai" ? SOLVE_ALL_ON_SERVER : 1;
      let next = 0;
      let stopped = false;
      const reportFirst = (e: unknown) => {
        if (!stopped) showSolveFailure(e);
        stopped = true;
      };
      const worker = async () => {
        while (!stopped && next < problems.length) {
          const i = next++;
          const title = `Twisted SMC: problem ${i + 1} of ${problems.length}…`;
          await solveSpan(engine, runs, panel, editor.document, problems[i], title, reportFirst);
        }
      };
      try {
        await Promise.all(Array.from({ length: Math.min(atOnce, problems.length) }, worker));
      } finally {
        solvingAll.delete(key);
      }
    },
    [INSERT_ANSWER_COMMAND]: (runId?: string) => insertAnswer(runs, runId),
  };
}
