/**
 * A read-only Markdown view of one run (answer, posterior, particles), opened from the link written
 * after a problem. Model output is shown inside code blocks, so no text it wrote is rendered as Markdown.
 */
import * as vscode from "vscode";
import { decodeLogWeight } from "../protocol/record";
import type { CommandTable } from "./commandTable";
import type { ParticlePanel } from "./panel";
import { RunStore } from "./runStore";
import { OPEN_RUN_COMMAND } from "./solveCommands";

export const RUN_SCHEME = "twisted-smc-run";

function fenced(text: string): string {
  const ticks = "`".repeat(Math.max(3, ...(text.match(/`+/g) ?? []).map((m) => m.length + 1)));
  return `${ticks}text\n${text}\n${ticks}`;
}

export function renderRun(runs: RunStore, id: string): string {
  const run = runs.get(id);
  if (!run) return `# Run not found\n\nRun ${id} is not in this workspace's history.`;
  const lines = [`# Twisted SMC run`, "", fenced(run.problem), ""];
  const r = run.result;
  if (!r) return [...lines, run.error ? `Failed: ${run.error}` : `Running: ${run.steps.length} steps so far.`].join("\n");
  if (run.uninserted)
    lines.push(
      `Not written into the document: ${run.uninserted}. Run **Twisted SMC: Insert Answer of the Last Run** to put it at the cursor.`,
      "",
    );
  lines.push(
    `**Answer: ${r.answer ?? "none"}** (posterior ${(100 * r.probability).toFixed(1)}%), ${r.particles.length} particles, ${r.level} level, twist ${r.twist ?? "none"}.`,
    "",
  );
  lines.push(
    `log Ẑ ${r.logZ === null ? "−∞" : r.logZ.toFixed(3)}, ${r.steps} steps, resampled at ${r.resampledAt.length ? r.resampledAt.join(", ") : "no step"}; ${r.server ? `server ${r.server}, ${r.timing.requests ?? 0} requests` : r.device}; ${r.timing.totalMs} ms.`,
    "",
  );
  lines.push("| answer | probability | particles |", "| --- | --- | --- |");
  for (const a of r.posterior) lines.push(`| ${a.answer} | ${(100 * a.probability).toFixed(1)}% | ${a.particles} |`);
  lines.push("", "## Particles", "");
  r.particles
    .map((p, i) => ({ p, i }))
    .sort((a, b) => decodeLogWeight(b.p.logWeight) - decodeLogWeight(a.p.logWeight))
    .forEach(({ p, i }) =>
      lines.push(
        `Particle ${i + 1}: answer ${p.answer ?? "none"}, log weight ${p.logWeight === null ? "−∞" : p.logWeight.toFixed(3)}`,
        "",
        fenced(p.text),
        "",
      ),
    );
  return lines.join("\n");
}

export class RunDocumentProvider implements vscode.TextDocumentContentProvider {
  constructor(private readonly runs: RunStore) {}
  provideTextDocumentContent(uri: vscode.Uri): string {
    return renderRun(this.runs, uri.path.replace(/\.md$/, ""));
  }
}

/** Opening a run: in the panel (the link after an answer), or as this read-only Markdown view. */
export function runCommands(runs: RunStore, panel: ParticlePanel): CommandTable {
  return {
    [OPEN_RUN_COMMAND]: (id: string) => panel.show(id),
    "twistedSmc.openRunAsText": async (id?: string) => {
      const runId = id ?? runs.all()[0]?.id;
      if (!runId) return void vscode.window.showInformationMessage("Twisted SMC: no run yet.");
      const doc = await vscode.workspace.openTextDocument(vscode.Uri.from({ scheme: RUN_SCHEME, path: `${runId}.md` }));
      await vscode.window.showTextDocument(doc, { preview: true, viewColumn: vscode.ViewColumn.Beside });
    },
  };
}
