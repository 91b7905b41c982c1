/**
 * The particle panel's script (bundled for the browser into media/panel.js). It draws what the SMC
 * record says: each particle as a node per step joined to its parent, sized by its weight, resampling
 * steps marked, finished particles hollow; the ESS curve; the posterior over answers; the chosen
 * solution; past runs to reopen and replay; the loss curve of a training run.
 *
 * Model output is untrusted: every text goes in through textContent, never as HTML.
 */
import type { PanelToWebview, WebviewToPanel, PanelRun, TrainPoint } from "../protocol/panelMessages";
import { decodeLogWeight } from "../protocol/record";

declare function acquireVsCodeApi(): { postMessage(m: WebviewToPanel): void; getState(): unknown; setState(s: unknown): void };

const vscode = acquireVsCodeApi();
const SVG = "http://www.w3.org/2000/svg";
/** What the webview keeps across reloads: the run it showed, so a reopened panel draws it at once. */
interface SavedState {
  current?: string;
  run?: PanelRun;
}
const saved = (vscode.getState() ?? {}) as SavedState;
const state: {
  runs: Map<string, PanelRun>;
  current?: string;
  selected?: number;
  scrollToSelected?: boolean;
  replayStep?: number;
  train: TrainPoint[];
  loaded: boolean;
} = {
  runs: new Map(saved.run ? [[saved.run.id, saved.run]] : []),
  current: saved.current,
  train: [],
  // Until the host's snapshot arrives, "no run yet" may be false.
  loaded: false,
};

/** The last component of a path (the twist's file name; the full path is the tooltip). */
function fileName(path: string | null): string {
  return path ? path.split(/[\\/]/).pop()! : "none";
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function svg(tag: string, attrs: Record<string, string | number>): SVGElement {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** Normalised weights; a null log weight is a dead particle (−∞ on the wire) and weighs nothing. */
function normalise(wire: (number | null)[]): number[] {
  const logW = wire.map(decodeLogWeight);
  const max = Math.max(...logW);
  if (!Number.isFinite(max)) return logW.map(() => 1 / logW.length);
  const w = logW.map((x) => Math.exp(x - max));
  const s = w.reduce((a, b) => a + b, 0);
  return w.map((x) => x / s);
}

/** Each particle's full text at a step, rebuilt by following parents through the record. */
function textsAt(run: PanelRun, upto: number): string[] {
  let texts: string[] = run.steps[0]?.particles.map(() => "") ?? [];
  for (let s = 0; s <= upto && s < run.steps.length; s++) texts = run.steps[s].particles.map((p) => texts[p.parent] + p.text);
  return texts;
}

function render(): void {
  const root = document.getElementById("root")!;
  root.replaceChildren();
  const runs = [...state.runs.values()].sort((a, b) => b.started - a.started);
  const run = state.current ? state.runs.get(state.current) : runs[0];
  if (!run) {
    root.append(
      el(
        "p",
        { class: "empty" },
        state.loaded
          ? "No run yet. Put the cursor in a math word problem in a Markdown file and run “Solve with Twisted SMC”."
          : "Loading runs…",
      ),
    );
    renderTraining(root);
    return;
  }
  // Saved once the run has ended (not every streamed frame): a reopened panel draws it before the host answers.
  if (state.current !== run.id || (run.result && saved.run !== run)) {
    saved.current = run.id;
    saved.run = run.result || run.error ? run : saved.run;
    vscode.setState(saved);
  }
  state.current = run.id;

  const bar = el("div", { class: "bar" });
  const picker = el("select", { "aria-label": "Run" });
  for (const r of runs) {
    const o = el("option", { value: r.id }, `${new Date(r.started).toLocaleTimeString()} — ${r.problem.slice(0, 60)}`);
    if (r.id === run.id) o.selected = true;
    picker.append(o);
  }
  picker.addEventListener("change", () => {
    state.current = picker.value;
    state.selected = undefined;
    state.replayStep = undefined;
    vscode.postMessage({ type: "selectRun", runId: picker.value });
    render();
  });
  const replay = el("button", { title: "Replay the run step by step" }, "Replay");
  replay.addEventListener("click", () => startReplay(run));
  bar.append(picker, replay);
  root.append(bar);

  root.append(el("p", { class: "problem" }, run.problem));
  if (run.result) {
    const c = run.result.confidence;
    const a = el("p", { class: `answer ${c.kind}` });
    a.append(
      el("strong", {}, `Answer: ${c.summary}`),
      document.createTextNode(
        ` — ${run.result.particles.length} particles, ${run.result.level} level, twist ${fileName(run.result.twist)}`,
      ),
    );
    if (run.result.twist) a.title = run.result.twist;
    root.append(a);
    if (c.outOfDepth) root.append(el("p", { class: "warning", role: "note" }, `⚠ ${c.outOfDepth}`));
  } else if (run.error) {
    root.append(el("p", { class: "error" }, run.error));
  } else {
    root.append(el("p", { class: "running" }, `Running… step ${run.steps.length}`));
  }

  const last = Math.min(state.replayStep ?? run.steps.length - 1, run.steps.length - 1);
  if (last >= 0) root.append(trajectories(run, last), essCurve(run, last));
  if (run.result && state.replayStep === undefined) root.append(posterior(run));
  const texts = last >= 0 ? textsAt(run, last) : [];
  const chosen = state.selected ?? chosenParticle(run);
  if (chosen !== undefined && texts[chosen] !== undefined) {
    const solution = el("pre", { class: "solution" }, texts[chosen]);
    root.append(el("h3", {}, state.selected !== undefined ? `Particle ${chosen + 1}` : "Chosen solution"), solution);
    if (state.scrollToSelected) solution.scrollIntoView({ block: "nearest" });
  }
  state.scrollToSelected = false;
  renderTraining(root);
}

function chosenParticle(run: PanelRun): number | undefined {
  if (!run.result) return undefined;
  let best: number | undefined;
  run.result.particles.forEach((p, i) => {
    if (
      p.answer === run.result!.answer &&
      (best === undefined || decodeLogWeight(p.logWeight) > decodeLogWeight(run.result!.particles[best].logWeight))
    )
      best = i;
  });
  return best;
}

function trajectories(run: PanelRun, last: number): SVGElement {
  const K = run.steps[0].particles.length;
  // Fit the steps into the panel's width; long runs get narrow columns rather than a scroll bar.
  const available = Math.max(200, (document.getElementById("root")?.clientWidth ?? 380) - 8);
  const dx = Math.max(2, Math.min(24, available / Math.max(2, last + 2)));
  const dy = Math.max(6, Math.min(22, 320 / K));
  const width = (last + 2) * dx,
    height = (K + 1) * dy;
  const root = svg("svg", {
    class: "trajectories",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "xMinYMin meet",
    role: "img",
    "aria-label": `Particle trajectories over ${last + 1} steps`,
  });
  const texts: string[][] = [];
  let acc: string[] = run.steps[0].particles.map(() => "");
  for (let s = 0; s <= last; s++) {
    acc = run.steps[s].particles.map((p) => acc[p.parent] + p.text);
    texts.push(acc);
  }
  for (let s = 0; s <= last; s++) {
    const step = run.steps[s];
    const x = (s + 1) * dx;
    if (s > 0 && run.steps[s - 1].resampled)
      root.append(svg("line", { class: "resampled", x1: x - dx / 2, x2: x - dx / 2, y1: 0, y2: height }));
    const w = normalise(step.particles.map((p) => p.logWeight));
    step.particles.forEach((p, i) => {
      const y = (i + 1) * dy;
      if (s > 0)
        root.append(
          svg("line", {
            class: "edge",
            x1: x - dx,
            y1: (p.parent + 1) * dy,
            x2: x,
            y2: y,
            "stroke-opacity": 0.25 + 0.75 * Math.min(1, w[i] * K),
          }),
        );
    });
    step.particles.forEach((p, i) => {
      const y = (i + 1) * dy;
      const r = Math.max(1, Math.min(dy / 2, dx / 2, (Math.min(dx, dy) / 2) * Math.sqrt(w[i] * K) * 0.8));
      const selected = s === last && i === state.selected;
      const node = svg("circle", {
        cx: x,
        cy: y,
        r,
        class: `node${p.finished ? " finished" : ""}${selected ? " selected" : ""}`,
        "aria-selected": String(selected),
        tabindex: s === last ? 0 : -1,
        "fill-opacity": 0.3 + 0.7 * Math.min(1, w[i] * K),
      });
      const title = svg("title", {});
      title.textContent = `particle ${i + 1}, step ${s + 1}, weight ${(100 * w[i]).toFixed(1)}%\n${texts[s][i]}`;
      node.append(title);
      const select = () => {
        state.selected = i;
        state.scrollToSelected = true;
        render();
      };
      node.addEventListener("click", select);
      node.addEventListener("keydown", (e) => {
        if ((e as KeyboardEvent).key === "Enter" || (e as KeyboardEvent).key === " ") select();
      });
      root.append(node);
    });
  }
  return root;
}

/** The panel's drawing width: charts fit the sidebar however narrow it is. */
function panelWidth(): number {
  return Math.max(120, (document.getElementById("root")?.clientWidth ?? 300) - 8);
}

function essCurve(run: PanelRun, last: number): SVGElement {
  const K = run.steps[0].particles.length;
  const width = panelWidth(),
    height = 60;
  const root = svg("svg", {
    class: "ess",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": "Effective sample size per step",
  });
  const pts = run.steps
    .slice(0, last + 1)
    .map((s, i) => `${(i / Math.max(1, last)) * (width - 10) + 5},${height - 5 - (s.ess / K) * (height - 15)}`);
  root.append(svg("polyline", { points: pts.join(" "), class: "ess-line" }));
  const label = svg("text", { x: 5, y: 10, class: "label" });
  label.textContent = `ESS (of ${K}); last ${run.steps[last].ess.toFixed(1)}`;
  root.append(label);
  return root;
}

function posterior(run: PanelRun): HTMLElement {
  const box = el("div", { class: "posterior", role: "list", "aria-label": "Posterior over answers" });
  for (const a of run.result!.posterior.slice(0, 10)) {
    const row = el("div", { class: "row", role: "listitem" });
    const bar = el("span", { class: "barfill" });
    bar.style.width = `${Math.max(1, 100 * a.probability)}%`;
    row.append(
      el("span", { class: "answer-key" }, a.answer),
      el("span", { class: "track" }),
      el("span", { class: "pct" }, `${(100 * a.probability).toFixed(1)}%`),
    );
    row.children[1].append(bar);
    box.append(row);
  }
  return box;
}

function renderTraining(root: HTMLElement): void {
  if (!state.train.length) return;
  root.append(el("h3", {}, `Training: ${state.train.length} batches, last loss ${state.train[state.train.length - 1].loss.toFixed(4)}`));
  const width = panelWidth(),
    height = 80;
  const s = svg("svg", { class: "loss", width, height, role: "img", "aria-label": "Training loss per batch" });
  const ys = state.train.map((p) => p.loss);
  const lo = Math.min(...ys),
    hi = Math.max(...ys),
    span = hi - lo || 1;
  const pts = state.train.map(
    (p, i) => `${(i / Math.max(1, state.train.length - 1)) * (width - 10) + 5},${height - 5 - ((p.loss - lo) / span) * (height - 10)}`,
  );
  s.append(svg("polyline", { points: pts.join(" "), class: "loss-line" }));
  root.append(s);
}

let replayTimer: ReturnType<typeof setInterval> | undefined;
function startReplay(run: PanelRun): void {
  if (replayTimer) clearInterval(replayTimer);
  state.replayStep = 0;
  render();
  replayTimer = setInterval(
    () => {
      if (state.replayStep === undefined || state.replayStep >= run.steps.length - 1) {
        clearInterval(replayTimer);
        state.replayStep = undefined;
      } else state.replayStep++;
      render();
    },
    Math.max(30, 3000 / Math.max(1, run.steps.length)),
  );
}

window.addEventListener("message", (event: MessageEvent<PanelToWebview>) => {
  const m = event.data;
  switch (m.type) {
    case "runs":
      state.loaded = true;
      for (const r of m.runs) state.runs.set(r.id, r);
      // A saved run the host no longer keeps (history cleared) is not shown as if it were.
      if (saved.run && !m.runs.some((r) => r.id === saved.run!.id)) state.runs.delete(saved.run.id);
      break;
    case "run":
      state.runs.set(m.run.id, m.run);
      if (m.focus) {
        state.current = m.run.id;
        state.selected = undefined;
      }
      break;
    case "step": {
      const r = state.runs.get(m.runId);
      // Idempotent: a step seen already (from a snapshot) is skipped.
      if (r && m.step.step === r.steps.length) r.steps.push(m.step);
      break;
    }
    case "train":
      if (m.reset) state.train = [];
      state.train.push(...m.points);
      break;
  }
  scheduleRender();
});

// Steps stream in faster than a frame: draw at most once per frame.
let frame: number | undefined;
function scheduleRender(): void {
  if (frame !== undefined) return;
  frame = requestAnimationFrame(() => {
    frame = undefined;
    render();
  });
}

// A narrower or wider sidebar redraws the charts to fit.
new ResizeObserver(() => scheduleRender()).observe(document.getElementById("root")!);
render();
vscode.postMessage({ type: "ready" });
