// A small seeded PRNG (SplitMix64 seeding into xoshiro128**): the same seed gives the same draws on
// every platform, so a seeded request gives the same text.
export class Rng {
  private readonly s = new Uint32Array(4)

  constructor (seed: number) {
    let x = BigInt.asUintN(64, BigInt(Math.floor(seed)))
    for (let i = 0; i < 4; i++) {
      x = BigInt.asUintN(64, x + 0x9e3779b97f4a7c15n)
      let z = x
      z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n)
      z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn)
      this.s[i] = Number(BigInt.asUintN(32, z ^ (z >> 31n)))
    }
  }

  /** Uniform in [0, 1). */
  next (): number {
    const s = this.s
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0
    const t = s[1] << 9
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]
    s[2] ^= t
    s[3] = rotl(s[3], 11)
    return result / 4294967296
  }
}

function rotl (x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0
}
