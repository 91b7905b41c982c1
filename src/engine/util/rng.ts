/**
 * A small, seedable pseudo-random generator (splitmix64 folded to 32-bit outputs via xorshift128+
 * style mixing). Everything stochastic in the engine draws from one of these so that a seed
 * reproduces a run exactly on every platform; Math.random is never used.
 */
export class Rng {
  private state: bigint;

  constructor(seed: number | bigint | string) {
    this.state = typeof seed === "string" ? hashString64(seed) : BigInt.asUintN(64, BigInt(seed));
  }

  /** Next 64-bit output of splitmix64. */
  private next64(): bigint {
    this.state = BigInt.asUintN(64, this.state + 0x9e3779b97f4a7c15n);
    let z = this.state;
    z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
    z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
    return z ^ (z >> 31n);
  }

  /** Uniform in [0, 1) with 53 bits of precision. */
  uniform(): number {
    return Number(this.next64() >> 11n) / 2 ** 53;
  }

  /** Uniform integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || hi < lo) {
      throw new RangeError(`Rng.int needs integers lo <= hi, got ${lo}, ${hi}`);
    }
    return lo + Math.floor(this.uniform() * (hi - lo + 1));
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError("Rng.pick on an empty list");
    return items[Math.floor(this.uniform() * items.length)];
  }

  /** A standard normal draw (Box–Muller). */
  normal(): number {
    const u = 1 - this.uniform();
    const v = this.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** An independent generator derived from this one and a label, for sub-streams. */
  fork(label: string): Rng {
    return new Rng(BigInt.asUintN(64, this.next64() ^ hashString64(label)));
  }
}

/** FNV-1a 64-bit hash of a string: stable across runs and platforms. */
export function hashString64(text: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (let i = 0; i < text.length; i++) {
    h ^= BigInt(text.charCodeAt(i));
    h = BigInt.asUintN(64, h * 0x100000001b3n);
  }
  return h;
}
