/**
 * Where SMC's proposals come from when not from logits read in JavaScript: the draw each row got in
 * its forward pass, or draws the model makes afterwards from any rows of an output (StepOutput.drawRows),
 * possibly from a token twist's proposal it evaluates too. Also reads the rows that JavaScript draws from.
 */
import { RowSamples, StepOutput, TokenTwistWeights } from "../lm/causalLm";

/** One drawn token with what the importance weights need. */
export interface Draw {
  token: number;
  /** log p(token) at T = 1, log q(token) under the proposal, the row's largest log p. */
  logP: number;
  logQ: number;
  logpMax: number;
  /** log ψ(token) of the twist the proposal used (0 when untwisted). */
  logPsi: number;
}

type Pending = { out: StepOutput; row: number };

/** A row's draw from its forward pass. */
export function passDraw(samples: RowSamples, row: number): Draw {
  return { token: samples.token[row], logP: samples.logp[row], logQ: samples.logq[row], logpMax: samples.logpMax[row], logPsi: 0 };
}

/**
 * One draw per pending (output, row), made by the model, in order: one drawRows call per output, with
 * a uniform each (drawn in order) and, for a twisted proposal, the twist (read where the model runs).
 */
export async function drawOnModel(
  pending: readonly Pending[],
  uniform: () => number,
  temperature: number,
  twist?: TokenTwistWeights,
): Promise<Draw[]> {
  const uniforms = pending.map(() => uniform());
  const draws: Draw[] = new Array(pending.length);
  for (const [out, members] of byOutput(pending)) {
    const rows = members.map((i) => pending[i].row);
    const d = await out.drawRows!({ rows, uniforms: members.map((i) => uniforms[i]), temperature, twist: twist && { weights: twist } });
    members.forEach(
      (i, k) =>
        (draws[i] = { token: d.token[k], logP: d.logp[k], logQ: d.logq[k], logpMax: d.logpMax[k], logPsi: d.logPsi ? d.logPsi[k] : 0 }),
    );
  }
  return draws;
}

/** Each pending row's hidden state, rows × hiddenSize (one read per output), or undefined where the model has none. */
export async function readHiddenRows(pending: readonly Pending[], hiddenSize: number): Promise<Float32Array | undefined> {
  if (!pending.length || !pending.every((p) => p.out.readHidden)) return undefined;
  const hidden = new Float32Array(pending.length * hiddenSize);
  for (const [out, members] of byOutput(pending)) {
    const rows = await out.readHidden!(members.map((i) => pending[i].row));
    members.forEach((i, k) => hidden.set(rows[k], i * hiddenSize));
  }
  return hidden;
}

/** The logits rows that particles draw from in JavaScript, read once per output: on a GPU only these rows come back. */
export async function readDrawnRows(pending: readonly Pending[]): Promise<Map<StepOutput, Map<number, Float32Array>>> {
  const read = new Map<StepOutput, Map<number, Float32Array>>();
  for (const [out, members] of byOutput(pending)) {
    const list = [...new Set(members.map((i) => pending[i].row))];
    const logits = await out.readRows(list);
    read.set(out, new Map(list.map((r, i) => [r, logits[i]])));
  }
  return read;
}

/** The indices of `pending` grouped by output, in order: each output is read or drawn from once. */
function byOutput(pending: readonly Pending[]): Map<StepOutput, number[]> {
  const groups = new Map<StepOutput, number[]>();
  pending.forEach(({ out }, i) => {
    const members = groups.get(out);
    if (members) members.push(i);
    else groups.set(out, [i]);
  });
  return groups;
}
