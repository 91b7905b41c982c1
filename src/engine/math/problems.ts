/**
 * A seeded generator of grade-school word problems with step-by-step solutions.
 *
 * A problem is a short story about one running quantity: the first sentence sets it (a given
 * number, or a product that is itself a step), each later sentence changes it with one exact
 * operation (+ − × ÷), and the question asks for its final value. The solution writes one
 * `a op b = c` line per operation and ends with GSM8K's `#### N` line, so the same loader and
 * answer extractor serve this data and real GSM8K.
 */
import { Rng, hashString64 } from "../util/rng";

export type Op = "+" | "-" | "*" | "/";
export type Split = "train" | "test";

export interface SolutionStep {
  a: number;
  op: Op;
  b: number;
  c: number;
}

export interface SynthProblem {
  question: string;
  /** GSM8K-style worked solution: one equation per line, then `#### N`. */
  answer: string;
  steps: SolutionStep[];
  final: number;
  theme: string;
}

export const MAX_VALUE = 999;
export const MIN_STEPS = 1;
export const MAX_STEPS = 5;

/** Every problem belongs to exactly one split, decided by a hash of its question text. */
export function splitOf(question: string): Split {
  return hashString64(question) % 5n === 0n ? "test" : "train";
}

export function applyOp(a: number, op: Op, b: number): number {
  switch (op) {
    case "+":
      return a + b;
    case "-":
      return a - b;
    case "*":
      return a * b;
    case "/":
      return a / b;
  }
}

const NAMES = [
  "Ava",
  "Ben",
  "Carla",
  "Dev",
  "Emma",
  "Farid",
  "Grace",
  "Hugo",
  "Ines",
  "Jon",
  "Kira",
  "Liam",
  "Maya",
  "Noah",
  "Olga",
  "Pablo",
  "Rosa",
  "Sam",
  "Tara",
  "Umar",
  "Vera",
  "Wes",
  "Yuki",
  "Zoe",
] as const;
const PRONOUN: Record<string, string> = Object.fromEntries(NAMES.map((n, i) => [n, i % 2 === 0 ? "She" : "He"]));

/** How the sentences of one theme talk about the running quantity. */
interface Theme {
  name: string;
  /** First sentence setting the quantity to `a`. */
  given(w: Words, a: number): string;
  /** First sentence setting the quantity to `a × b` (counts as the first step). */
  product(w: Words, a: number, b: number): string;
  /** A sentence that applies `op b` to the quantity. */
  change(w: Words, op: Op, b: number, rng: Rng): string;
  question(w: Words): string;
}

interface Words {
  name: string;
  she: string;
  item: string;
  container: string;
  thing: string;
  vehicle: string;
}

const ITEMS = ["apples", "pens", "marbles", "stickers", "cookies", "stamps", "shells", "cards", "beads", "eggs"];
const CONTAINERS = ["boxes", "bags", "jars", "crates", "packs", "baskets"];
const THINGS = ["book", "hat", "lamp", "game", "scarf", "kite", "plant", "clock"];
const VEHICLES = ["train", "bus", "truck", "boat", "car"];

const dollars = (n: number) => `$${n}`;

const boxes: Theme = {
  name: "boxes",
  given: (w, a) => `${w.name} has ${a} ${w.item}.`,
  product: (w, a, b) => `${w.name} has ${a} ${w.container} with ${b} ${w.item} in each.`,
  change: (w, op, b, rng) =>
    rng.pick(
      (
        {
          "+": [`${w.she} buys ${b} more ${w.item}.`, `${w.she} finds ${b} more ${w.item}.`, `A friend gives ${w.name} ${b} ${w.item}.`],
          "-": [`${w.she} gives away ${b} ${w.item}.`, `${w.she} loses ${b} ${w.item}.`, `${w.she} uses ${b} of the ${w.item}.`],
          "*": [`${w.she} then gets ${b} times as many ${w.item} as ${w.she.toLowerCase()} has.`],
          "/": [`${w.she} splits the ${w.item} equally into ${b} ${w.container} and keeps one of them.`],
        } as const
      )[op],
    ),
  question: (w) => `How many ${w.item} does ${w.name} have now?`,
};

const shopping: Theme = {
  name: "shopping",
  given: (w, a) => `${w.name} spends ${dollars(a)} at a market.`,
  product: (w, a, b) => `${w.name} buys ${a} ${w.item} that cost ${dollars(b)} each.`,
  change: (w, op, b, rng) =>
    rng.pick(
      (
        {
          "+": [`${w.she} also buys a ${w.thing} for ${dollars(b)}.`, `${w.she} pays ${dollars(b)} more for delivery.`],
          "-": [`${w.she} uses a coupon for ${dollars(b)} off the total.`, `${w.she} gets ${dollars(b)} back from a refund.`],
          "*": [`${w.she} spends the same total every week for ${b} weeks.`],
          "/": [
            `${w.she} splits the total cost equally among ${b} people, ${w.she.toLowerCase() === "she" ? "herself" : "himself"} included.`,
          ],
        } as const
      )[op],
    ),
  question: () => `How many dollars does that come to?`,
};

const sharing: Theme = {
  name: "sharing",
  given: (w, a) => `A class collects ${a} ${w.item}.`,
  product: (w, a, b) => `A class of ${a} children brings ${b} ${w.item} per child.`,
  change: (w, op, b, rng) =>
    rng.pick(
      (
        {
          "+": [`The teacher adds ${b} ${w.item}.`, `Another class gives them ${b} ${w.item}.`],
          "-": [`${b} of the ${w.item} are broken and thrown away.`, `They give ${b} ${w.item} to the school office.`],
          "*": [`Each of those ${w.item} is traded for ${b} new ones.`],
          "/": [`The ${w.item} are shared equally among ${b} groups, and ${w.name}'s group keeps its share.`],
        } as const
      )[op],
    ),
  question: (w) => `How many ${w.item} are left in the end?`,
};

const rates: Theme = {
  name: "rates",
  given: (w, a) => `A ${w.thing} factory makes ${a} ${w.thing}s in a day.`,
  product: (w, a, b) => `A ${w.thing} factory makes ${a} ${w.thing}s each hour for ${b} hours.`,
  change: (w, op, b, rng) =>
    rng.pick(
      (
        {
          "+": [`A second shift makes ${b} more ${w.thing}s.`, `A late order adds ${b} ${w.thing}s.`],
          "-": [`${b} of the ${w.thing}s fail the check and are removed.`, `${b} ${w.thing}s are sent back.`],
          "*": [`The same output is made on each of ${b} days.`],
          "/": [`The ${w.thing}s are loaded equally onto ${b} ${w.container === "boxes" ? "trucks" : "vans"}, and one load is counted.`],
        } as const
      )[op],
    ),
  question: (w) => `How many ${w.thing}s is that?`,
};

const travel: Theme = {
  name: "travel",
  given: (w, a) => `A ${w.vehicle} travels ${a} miles.`,
  product: (w, a, b) => `A ${w.vehicle} travels ${a} miles each hour for ${b} hours.`,
  change: (_w, op, b, rng) =>
    rng.pick(
      (
        {
          "+": [`Then it goes ${b} more miles.`, `A detour adds ${b} miles.`],
          "-": [`It then drives back ${b} miles.`, `A shortcut saves ${b} miles.`],
          "*": [`It makes the same trip ${b} times in a week.`],
          "/": [`The whole distance is split into ${b} equal legs, and one leg is counted.`],
        } as const
      )[op],
    ),
  question: () => `How many miles is that?`,
};

const ages: Theme = {
  name: "ages",
  given: (_w, a) => `An old tower is ${a} years old.`,
  product: (_w, a, b) => `A bell is ${a} years old and a castle is ${b} times as old.`,
  change: (_w, op, b, rng) =>
    rng.pick(
      (
        {
          "+": [`A bridge is ${b} years older than that.`, `A church is ${b} years older than that.`],
          "-": [`A mill is ${b} years younger than that.`, `A gate is ${b} years younger than that.`],
          "*": [`A wall is ${b} times as old as that.`],
          "/": [`A statue's age is that age divided by ${b}.`],
        } as const
      )[op],
    ),
  question: () => `How old, in years, is the last thing named?`,
};

export const THEMES: readonly Theme[] = [boxes, shopping, sharing, rates, travel, ages];

/** Chooses an operand for `op` applied to `v` that keeps every value an integer in [0, MAX_VALUE]. */
function chooseOperand(rng: Rng, v: number, op: Op): number | undefined {
  switch (op) {
    case "+":
      return v < MAX_VALUE ? rng.int(1, Math.min(MAX_VALUE - v, 200)) : undefined;
    case "-":
      return v >= 2 ? rng.int(1, v - 1) : undefined;
    case "*": {
      const hi = Math.min(12, Math.floor(MAX_VALUE / Math.max(v, 1)));
      return v >= 1 && hi >= 2 ? rng.int(2, hi) : undefined;
    }
    case "/": {
      const divisors: number[] = [];
      for (let d = 2; d <= Math.min(12, v - 1); d++) if (v % d === 0) divisors.push(d);
      return divisors.length ? rng.pick(divisors) : undefined;
    }
  }
}

/** One problem drawn from `rng` (any split); `splitOf` decides where it belongs. */
export function drawProblem(rng: Rng): SynthProblem {
  const theme = rng.pick(THEMES);
  const name = rng.pick(NAMES);
  const w: Words = {
    name,
    she: PRONOUN[name],
    item: rng.pick(ITEMS),
    container: rng.pick(CONTAINERS),
    thing: rng.pick(THINGS),
    vehicle: rng.pick(VEHICLES),
  };
  const nSteps = rng.int(MIN_STEPS, MAX_STEPS);
  const steps: SolutionStep[] = [];
  const sentences: string[] = [];
  let v: number;
  if (rng.uniform() < 0.5) {
    const a = rng.int(2, 30);
    const b = rng.int(2, Math.min(50, Math.floor(MAX_VALUE / a)));
    v = a * b;
    steps.push({ a, op: "*", b, c: v });
    sentences.push(theme.product(w, a, b));
  } else {
    v = rng.int(10, 500);
    sentences.push(theme.given(w, v));
  }
  while (steps.length < nSteps) {
    const op = rng.pick<Op>(["+", "-", "*", "/"]);
    const b = chooseOperand(rng, v, op);
    if (b === undefined) continue;
    const c = applyOp(v, op, b);
    steps.push({ a: v, op, b, c });
    sentences.push(theme.change(w, op, b, rng));
    v = c;
  }
  const question = [...sentences, theme.question(w)].join(" ");
  return { question, answer: formatSolution(steps), steps, final: v, theme: theme.name };
}

export function formatSolution(steps: readonly SolutionStep[]): string {
  const lines = steps.map((s) => `${s.a} ${s.op} ${s.b} = ${s.c}`);
  const final = steps.length ? steps[steps.length - 1].c : 0;
  return [...lines, `#### ${final}`].join("\n");
}

/**
 * The first `n` distinct problems of `split` for `seed`. Problems of the other split are skipped,
 * so the splits can never share a question; the same seed always gives the same list.
 */
export function synthesize(split: Split, n: number, seed = 0): SynthProblem[] {
  const rng = new Rng(`synth:${seed}:${split}`);
  const seen = new Set<string>();
  const out: SynthProblem[] = [];
  while (out.length < n) {
    const p = drawProblem(rng);
    if (splitOf(p.question) !== split || seen.has(p.question)) continue;
    seen.add(p.question);
    out.push(p);
  }
  return out;
}
