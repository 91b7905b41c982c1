/**
 * The end of an SMC step, the same at token and step level and over a local model or a server: the
 * effective sample size of the weights, the step's record, and resampling when the weights have
 * degenerated (ESS < threshold·K, or always/never). Resampling draws ancestors and resets every weight
 * to their average, so the mean final weight stays an unbiased Ẑ.
 */
import { Rng } from "../util/rng";
import { copyAncestors, Particle, stepRecord } from "./particles";
import { resample } from "./resampling";
import type { SmcOptions } from "./twistedSmc";
import { effectiveSampleSize, logMeanExp, normalize } from "./weights";

export interface StepEnd {
  ess: number;
  /** Each particle's parent for the next step's record: its ancestor when resampled, else itself. */
  parents: number[];
  resampled: boolean;
  /** Set when every weight is zero: the population cannot continue. */
  collapsed?: string;
}

export function endStep(
  ps: Particle[],
  parents: readonly number[],
  step: number,
  o: Pick<SmcOptions, "level" | "resample" | "essThreshold" | "resampling" | "clamp" | "onStep" | "text">,
  rng: Rng,
): StepEnd {
  const K = ps.length;
  const logW = ps.map((p) => p.logW);
  const ess = effectiveSampleSize(logW);
  const allDead = logW.every((w) => w === -Infinity);
  const collapsed = allDead
    ? `every particle's weight is zero after step ${step}: no particle reached a solution the final potential accepts`
    : undefined;
  const resampled =
    !allDead && ps.some((p) => !p.finish) && (o.resample === "always" || (o.resample === "adaptive" && ess < o.essThreshold * K));
  o.onStep?.(stepRecord(step, o.level === "token" ? "token" : "line", ps, parents, ess, resampled, (t) => o.text.decode(t)));
  if (!resampled) return { ess, parents: ps.map((_, i) => i), resampled, collapsed };
  // Conditional SMC: particle 0 keeps its own lineage, the others resample around it.
  const ancestors = o.clamp
    ? [0, ...resample("multinomial", normalize(logW), K - 1, rng)]
    : resample(o.resampling, normalize(logW), K, rng);
  copyAncestors(ps, ancestors, logMeanExp(logW));
  return { ess, parents: ancestors, resampled, collapsed };
}
