import assert from "node:assert/strict";
import { resample, RESAMPLING_SCHEMES } from "../../src/engine/smc/resampling";
import { effectiveSampleSize, logMeanExp, normalize } from "../../src/engine/smc/weights";
import { Rng } from "../../src/engine/util/rng";

describe("resampling schemes", () => {
  const w = normalize([0.1, 2.3, -1, 0.7, -5, 1.9, 0.0, 1.2].map((x) => x * 1.3));
  const K = w.length;
  const draws = 20000;

  function offspringStats(scheme: (typeof RESAMPLING_SCHEMES)[number]) {
    const rng = new Rng(`offspring:${scheme}`);
    const sum = new Float64Array(K);
    const sumSq = new Float64Array(K);
    for (let d = 0; d < draws; d++) {
      const counts = new Float64Array(K);
      const a = resample(scheme, w, K, rng);
      assert.equal(a.length, K);
      for (const i of a) counts[i]++;
      for (let i = 0; i < K; i++) {
        sum[i] += counts[i];
        sumSq[i] += counts[i] ** 2;
      }
    }
    const mean = Array.from(sum, (s) => s / draws);
    const variance = mean.map((m, i) => sumSq[i] / draws - m * m);
    return { mean, variance };
  }

  const stats = Object.fromEntries(RESAMPLING_SCHEMES.map((s) => [s, offspringStats(s)]));

  for (const scheme of RESAMPLING_SCHEMES) {
    it(`${scheme}: expected offspring count is K·w_i`, () => {
      const { mean, variance } = stats[scheme];
      for (let i = 0; i < K; i++) {
        const se = Math.sqrt(Math.max(variance[i], 1e-12) / draws);
        assert.ok(Math.abs(mean[i] - K * w[i]) < 4 * se + 1e-9, `particle ${i}: ${mean[i]} vs ${K * w[i]}`);
      }
    });
  }

  for (const scheme of ["stratified", "systematic", "residual"] as const) {
    it(`${scheme}: offspring variance is at most multinomial's`, () => {
      const total = (s: string) => stats[s].variance.reduce((a: number, b: number) => a + b, 0);
      assert.ok(total(scheme) <= total("multinomial"), `${total(scheme)} vs ${total("multinomial")}`);
    });
  }

  it("systematic and residual give floor or ceil of K·w_i copies", () => {
    const rng = new Rng(1);
    for (const scheme of ["systematic", "residual"] as const) {
      for (let d = 0; d < 200; d++) {
        const counts = new Array(K).fill(0);
        for (const i of resample(scheme, w, K, rng)) counts[i]++;
        if (scheme === "systematic") counts.forEach((c, i) => assert.ok(c === Math.floor(K * w[i]) || c === Math.ceil(K * w[i])));
        else counts.forEach((c, i) => assert.ok(c >= Math.floor(K * w[i])));
      }
    }
  });
});

describe("weights", () => {
  it("compute ESS, log-mean-exp and normalisation stably", () => {
    assert.equal(effectiveSampleSize([0, 0, 0, 0]), 4);
    assert.ok(Math.abs(effectiveSampleSize([0, -Infinity, -Infinity]) - 1) < 1e-12);
    assert.equal(effectiveSampleSize([-Infinity, -Infinity]), 0);
    assert.ok(Math.abs(logMeanExp([1000, 1000]) - 1000) < 1e-9);
    assert.equal(logMeanExp([-Infinity]), -Infinity);
    const n = normalize([-1e4, -1e4 + Math.log(3)]);
    assert.ok(Math.abs(n[1] - 0.75) < 1e-12);
  });
});
