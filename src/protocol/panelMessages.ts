/** Messages between the extension host and the particle panel's webview, typed for both sides. */
import type { SmcStepRecord, SolveResultMessage, WireLogWeight } from "./protocol";

/** A run as the panel draws it: the record, and the result once there is one. */
export interface PanelRun {
  id: string;
  problem: string;
  started: number;
  steps: SmcStepRecord[];
  result?: Pick<SolveResultMessage, "answer" | "probability" | "posterior" | "confidence" | "level" | "twist"> & {
    particles: { answer: string | null; logWeight: WireLogWeight }[];
  };
  error?: string;
}

export interface TrainPoint {
  step: number;
  loss: number;
  reward: number;
}

export type PanelToWebview =
  | { type: "runs"; runs: PanelRun[] }
  | { type: "run"; run: PanelRun; focus: boolean }
  | { type: "step"; runId: string; step: SmcStepRecord }
  | { type: "train"; points: TrainPoint[]; reset: boolean };

export type WebviewToPanel = { type: "ready" } | { type: "selectRun"; runId: string };
