/**
 * Runs of this workspace: what the engine streamed and returned, kept so the panel can show and replay
 * them after the fact, saved in the workspace state so they survive a reload.
 */
import * as vscode from "vscode";
import type { SmcStepRecord, SolveResultMessage } from "../protocol/protocol";

/** A run changed: a step arrived (`step` set), or it began, finished or failed. */
export interface RunChange {
  run: Run;
  step?: SmcStepRecord;
}

export interface Run {
  id: string;
  problem: string;
  started: number;
  steps: SmcStepRecord[];
  result?: SolveResultMessage;
  error?: string;
  /** Where the problem was: the answer goes after it. */
  document?: { uri: string; start: number; end: number };
  /** Why the answer is not in the document yet (Insert Answer puts it there). */
  uninserted?: string;
}

const KEY = "twistedSmc.runs";
const KEEP = 50;

export class RunStore {
  private readonly runs = new Map<string, Run>();
  private readonly emitter = new vscode.EventEmitter<RunChange>();
  readonly onDidChange = this.emitter.event;
  private counter = 0;

  constructor(private readonly memento: vscode.Memento) {
    for (const r of memento.get<Run[]>(KEY, [])) this.runs.set(r.id, r);
  }

  newRunId(): string {
    return `run-${Date.now().toString(36)}-${(this.counter++).toString(36)}`;
  }

  get(id: string): Run | undefined {
    return this.runs.get(id);
  }

  all(): Run[] {
    return [...this.runs.values()].sort((a, b) => b.started - a.started);
  }

  begin(id: string, problem: string, document?: Run["document"]): void {
    this.runs.set(id, { id, problem, started: Date.now(), steps: [], document });
    this.emitter.fire({ run: this.runs.get(id)! });
  }

  step(id: string, step: SmcStepRecord): void {
    const r = this.runs.get(id);
    if (!r) return;
    r.steps.push(step);
    this.emitter.fire({ run: r, step });
  }

  finish(id: string, result: SolveResultMessage): void {
    const r = this.runs.get(id);
    if (!r) return;
    r.result = result;
    r.steps = result.record.steps;
    this.emitter.fire({ run: r });
    void this.save();
  }

  fail(id: string, error: string): void {
    const r = this.runs.get(id);
    if (!r) return;
    r.error = error;
    this.emitter.fire({ run: r });
  }

  markUninserted(id: string, why: string): void {
    this.update(id, (r) => (r.uninserted = why));
  }

  markInserted(id: string): void {
    this.update(id, (r) => delete r.uninserted);
  }

  private update(id: string, change: (r: Run) => void): void {
    const r = this.runs.get(id);
    if (!r) return;
    change(r);
    this.emitter.fire({ run: r });
    void this.save();
  }

  private async save(): Promise<void> {
    const kept = this.all()
      .filter((r) => r.result)
      .slice(0, KEEP);
    await this.memento.update(KEY, kept);
  }

  dispose(): void {
    this.emitter.dispose();
  }
}
