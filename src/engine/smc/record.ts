/**
 * The record of one SMC run, step by step: enough for a visualisation to replay every trajectory,
 * resampling and weight. One format serves the CLI (--record), the editor panel and training.
 */

export interface ParticleStep {
  /** Index of this particle's parent in the previous step (resampling shows as parents ≠ own index). */
  parent: number;
  /** Text this particle added in this step ("" once finished). */
  text: string;
  /** Log weight after this step's reweighting, before any resampling that follows it. */
  logWeight: number;
  finished: boolean;
}

export interface SmcStepRecord {
  step: number;
  /** Token level: one token per particle; step level: one reasoning line per particle. */
  kind: "token" | "line";
  particles: ParticleStep[];
  ess: number;
  /** Whether the population was resampled right after this step. */
  resampled: boolean;
}

export interface SmcRecord {
  version: 1;
  problem: string;
  prompt: string;
  options: Record<string, unknown>;
  steps: SmcStepRecord[];
}
