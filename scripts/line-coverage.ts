/**
 * The share of GSM8K's reference-solution lines holding an equation that the line verifier reads, and
 * how many of its readings are misread (docs/line-verifier.md). Run: npx tsx scripts/line-coverage.ts
 * GSM8K is found as the trainer finds it ($TWISTED_SMC_GSM8K, else shared/datasets/gsm8k above the checkout).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gsm8kDir } from "../src/engine/train/data";
import { Coverage, lineCoverage } from "../src/engine/twist/lineCoverage";

const pct = (n: number, d: number) => `${((100 * n) / Math.max(d, 1)).toFixed(1)}%`;
const report = (name: string, n: number, c: Coverage) =>
  console.log(
    `GSM8K ${name}: ${n} solutions, ${c.lines} lines with an equation; read ${c.read} (${pct(c.read, c.lines)}), ` +
      `read with nothing misread ${c.readRight} (${pct(c.readRight, c.lines)}); ${c.arithmetic} arithmetic lines read, ` +
      `${c.misread} misread (${pct(c.misread, c.arithmetic)}); annotations read alone ${c.annotationsRead}/${c.annotations} ` +
      `(${pct(c.annotationsRead, c.annotations)})`,
  );

const dir = gsm8kDir();
const all: string[] = [];
for (const split of ["test", "train"]) {
  const answers = readFileSync(join(dir, `${split}.jsonl`), "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => String(JSON.parse(l).answer));
  all.push(...answers);
  report(split, answers.length, lineCoverage(answers, 0));
}
const c = lineCoverage(all, 15);
report("test+train", all.length, c);
console.log("Some lines not read:");
for (const l of c.unreadExamples) console.log(`  ${l}`);
console.log("Some lines misread (or wrong in the reference):");
for (const l of c.misreadExamples) console.log(`  ${l}`);
