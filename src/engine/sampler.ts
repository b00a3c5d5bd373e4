// Turns one row of logits into the next token. Order follows HF/TGI: repetition penalty, frequency
// and presence penalties, temperature, then the truncations (top_k, top_p, typical_p), then a draw.
//
// Every step is total over what the request schemas admit and what a model can emit: scores are
// float64 with NaN read as -inf and +inf as the largest double (so a difference of two scores is
// never NaN), and temperature divides distances from the best score, never scores themselves.
import { GREEDY, type SamplingParams } from '../generation/backend.ts'
import type { Rng } from './rng.ts'

// The parameters are part of the Backend interface; re-exported for the engine's own users.
export { GREEDY, type SamplingParams }

export interface SampledToken {
  id: number
  logprob: number                                  // under the model's own distribution
  top: Array<{ id: number, logprob: number }>      // the topLogprobs most likely, same distribution
}

/**
 * A row of logits no token can be drawn from (every value NaN or -inf). It belongs to one
 * sequence: the worker fails that sequence and keeps decoding the others in its batch.
 */
export class SamplingError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'SamplingError'
  }
}

/** Counts of tokens already seen: the context the penalties look at. */
export class TokenHistory {
  readonly promptOrOutput = new Set<number>()
  readonly outputCounts = new Map<number, number>()

  addPrompt (ids: readonly number[]): void { for (const id of ids) this.promptOrOutput.add(id) }
  addOutput (id: number): void {
    this.promptOrOutput.add(id)
    this.outputCounts.set(id, (this.outputCounts.get(id) ?? 0) + 1)
  }
}

/** NaN as -inf (never chosen), +inf as the largest double (ties with other +inf, beats the rest). */
function tame (x: number): number {
  if (Number.isNaN(x)) return -Infinity
  return x > Number.MAX_VALUE ? Number.MAX_VALUE : x
}

type Scores = Float32Array | Float64Array

/** One pass over a row: its best id, and whether every logit is finite (NaN and ±inf are not). */
function scan (logits: Float32Array): { finite: boolean, argmax: number } {
  let finite = true
  let bestId = 0
  let best = logits[0]
  for (let i = 0; i < logits.length; i++) {
    const x = logits[i]
    if (x - x !== 0) finite = false // NaN and ±inf: x - x is NaN
    else if (x > best || best !== best) { best = x; bestId = i } // best !== best: logits[0] was NaN
  }
  return { finite, argmax: bestId }
}

function tamed (logits: ArrayLike<number>): Float64Array {
  const out = new Float64Array(logits.length)
  for (let i = 0; i < out.length; i++) out[i] = tame(logits[i])
  return out
}

/** The largest score; throws SamplingError when there is none a token could be drawn from. */
function best (scores: Scores): number {
  let max = -Infinity
  for (let i = 0; i < scores.length; i++) if (scores[i] > max) max = scores[i]
  if (max === -Infinity) throw new SamplingError(`no token can be sampled: all ${scores.length} logits are NaN or -inf`)
  return max
}

/** log p(id) under the model's own distribution, from the graph's log-sum-exp when it is usable. */
function modelLogprob (row: Scores, lse: number | undefined): (id: number) => number {
  if (lse !== undefined && Number.isFinite(lse)) return (id) => row[id] - lse
  const max = best(row)
  let sum = 0
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max)
  const logSum = Math.log(sum)
  // (x - max) - log(sum), not x - (max + log(sum)): the latter rounds log(sum) away at huge max.
  return (id) => (row[id] - max) - logSum
}

/** The n highest-scoring ids, best first; ids scored -inf (probability 0) are never listed. */
function topN (scores: Scores, n: number): number[] {
  const idx: number[] = []
  if (n <= 0) return idx
  const byScore = (a: number, b: number): number => scores[b] - scores[a]
  for (let i = 0; i < scores.length; i++) {
    if (scores[i] === -Infinity) continue
    if (idx.length < n) { idx.push(i); idx.sort(byScore); continue }
    if (scores[i] > scores[idx[n - 1]]) {
      idx[n - 1] = i
      idx.sort(byScore)
    }
  }
  return idx
}

export function applyPenalties (scores: Float64Array, p: SamplingParams, history: TokenHistory): void {
  if (p.repetitionPenalty !== 1) {
    for (const id of history.promptOrOutput) {
      const x = scores[id]
      scores[id] = tame(x > 0 ? x / p.repetitionPenalty : x * p.repetitionPenalty)
    }
  }
  if (p.frequencyPenalty !== 0 || p.presencePenalty !== 0) {
    for (const [id, count] of history.outputCounts) {
      scores[id] = tame(scores[id] - (count * p.frequencyPenalty + p.presencePenalty))
    }
  }
}

/** Probabilities after temperature (> 0): exp((x - max) / T) / sum, and the log-probabilities
 * (typical sampling's surprise). (x - max) / T lies in [-inf, 0] for every T > 0, where x / T
 * overflows for tiny T; sum >= 1, the best token contributing exp(0). */
function tempered (scores: ArrayLike<number>, temperature: number, withLogp: boolean): { probs: Float64Array, logp: Float64Array | null } {
  const s = tamed(scores)
  const max = best(s)
  const t = Math.min(temperature, Number.MAX_VALUE)
  const probs = new Float64Array(s.length)
  let sum = 0
  for (let i = 0; i < s.length; i++) {
    const e = Math.exp((s[i] - max) / t)
    probs[i] = e
    sum += e
  }
  let logp: Float64Array | null = null
  if (withLogp) {
    const logSum = Math.log(sum)
    logp = new Float64Array(s.length)
    for (let i = 0; i < s.length; i++) logp[i] = (s[i] - max) / t - logSum
  }
  for (let i = 0; i < probs.length; i++) probs[i] /= sum
  return { probs, logp }
}

/**
 * Candidate ids with probabilities after temperature (> 0) and truncation, most likely first (ties:
 * lower id first). Never empty: the best-scoring token always survives every truncation. The
 * reference for drawToken, which draws the same id without building this list.
 */
export function candidates (scores: ArrayLike<number>, p: SamplingParams): Array<{ id: number, prob: number }> {
  const { probs, logp } = tempered(scores, p.temperature, p.typicalP < 1)
  // Truncations keep every token at or above a probability threshold, found in the probabilities
  // in descending order. Each threshold is at most the best token's probability, so that token is
  // always kept.
  const sorted = Float64Array.from(probs).sort().reverse()
  let threshold = 0
  if (p.topK > 0 && p.topK < sorted.length) threshold = sorted[p.topK - 1]
  if (p.topP < 1) {
    let mass = 0
    for (const q of sorted) {
      mass += q
      if (mass >= p.topP) { threshold = Math.max(threshold, q); break }
    }
  }
  let items: Array<{ id: number, prob: number }> = []
  for (let id = 0; id < probs.length; id++) if (probs[id] >= threshold && probs[id] > 0) items.push({ id, prob: probs[id] })
  if (p.typicalP < 1 && logp !== null) {
    // Typical sampling (Meister et al.): keep tokens whose surprise is closest to the entropy.
    let entropy = 0
    for (let i = 0; i < logp.length; i++) if (probs[i] > 0) entropy -= probs[i] * logp[i]
    const distance = (c: { prob: number }): number => Math.abs(-Math.log(c.prob) - entropy)
    items.sort((a, b) => distance(a) - distance(b))
    items = keepMass(items, p.typicalP).sort((a, b) => a.id - b.id)
  }
  // The normaliser in id order (drawToken sums in the same order without sorting).
  const total = items.reduce((t, c) => t + c.prob, 0)
  items.sort((a, b) => b.prob - a.prob)
  return items.map((c) => ({ id: c.id, prob: c.prob / total }))
}

/** The shortest prefix whose probabilities reach `mass` (all of them when rounding falls short). */
function keepMass<T extends { prob: number }> (items: T[], mass: number): T[] {
  let sum = 0
  for (let i = 0; i < items.length; i++) {
    sum += items[i].prob
    if (sum >= mass) return items.slice(0, i + 1)
  }
  return items
}

/**
 * The id `draw(candidates(scores, p), rng)` returns, without building or sorting a candidate per
 * token: the reference took 1.1–1.4 ms a row of the shipped model at temperature 0.8 with top_p
 * 0.95 and 3.6–5.2 ms at temperature alone (8,192 candidates sorted as objects), against a decoding
 * step of 0.3 ms (1 row) to 4.3 ms (32 rows). Same probabilities, thresholds, normaliser and walk,
 * in the same order of arithmetic: the probabilities in descending order come band by band (those
 * within a factor of 16 of the band above, sorted with their ids), only as far as the truncations
 * and the draw need, which at a peaked distribution is a few dozen tokens. Typical sampling takes
 * the reference path. (test/engine/sampler.test.ts compares both on random rows and parameters.)
 */
export function drawToken (scores: ArrayLike<number>, p: SamplingParams, rng: Rng): number {
  if (p.typicalP < 1) return draw(candidates(scores, p), rng)
  const { probs } = tempered(scores, p.temperature, false)
  const n = probs.length
  let threshold = 0
  const order = new Descending(probs)
  if (p.topK > 0 && p.topK < n) threshold = probs[order.at(p.topK - 1)]
  if (p.topP < 1) {
    let mass = 0
    for (let j = 0; order.has(j); j++) {
      const q = probs[order.at(j)]
      mass += q
      if (mass >= p.topP) { threshold = Math.max(threshold, q); break }
    }
  }
  let total = 0
  for (let id = 0; id < n; id++) if (probs[id] >= threshold && probs[id] > 0) total += probs[id]
  let u = rng.next()
  let last = -1
  for (let j = 0; order.has(j); j++) {
    const id = order.at(j)
    if (!(probs[id] >= threshold && probs[id] > 0)) break
    u -= probs[id] / total
    if (u < 0) return id
    last = id
  }
  return last // rounding left u a hair above zero: the least likely kept token
}

/** Ids in descending order of their (non-negative) probability, ties by ascending id, sorted a band
 * at a time as far as asked: band k holds the ids whose probability is in [top / 16^k,
 * top / 16^(k-1)); after BANDS bands, everything left (zeros included) is one last band. */
class Descending {
  private readonly ids: number[] = []
  private readonly top: number
  private high = Infinity
  private bands = 0
  private done = false

  constructor (private readonly probs: Float64Array) {
    let top = 0
    for (let i = 0; i < probs.length; i++) if (probs[i] > top) top = probs[i]
    this.top = top
  }

  /** Whether there is a j-th id (sorting more bands as needed). */
  has (j: number): boolean {
    while (j >= this.ids.length && !this.done) this.next()
    return j < this.ids.length
  }

  at (j: number): number {
    if (!this.has(j)) throw new RangeError(`Descending: no id at ${j}`)
    return this.ids[j]
  }

  private next (): void {
    this.bands++
    const low = this.bands >= BANDS ? 0 : (this.high === Infinity ? this.top : this.high) / 16
    const last = !(low > 0)
    const band: number[] = []
    const probs = this.probs
    for (let i = 0; i < probs.length; i++) {
      const q = probs[i]
      if (q < this.high && (last || q >= low)) band.push(i)
    }
    band.sort((a, b) => probs[b] - probs[a] || a - b)
    for (const id of band) this.ids.push(id)
    this.high = low
    if (last) this.done = true
  }
}

/** Bands Descending sorts one by one (down to top / 16^7, ~4e-9 of the best token's probability)
 * before sorting all the rest at once. */
const BANDS = 8

/** The first id of the largest score (NaN never wins). Four running maxima, merged at the end:
 * 7 µs a row of 8,192 against 10 for one (V8, this project's VMs), at every greedy token. */
export function argmax (scores: Scores): number {
  let b0 = -Infinity; let b1 = -Infinity; let b2 = -Infinity; let b3 = -Infinity
  let i0 = 0; let i1 = 1; let i2 = 2; let i3 = 3
  const whole = scores.length & ~3
  for (let i = 0; i < whole; i += 4) {
    const a = scores[i]; const b = scores[i + 1]; const c = scores[i + 2]; const d = scores[i + 3]
    if (a > b0) { b0 = a; i0 = i }
    if (b > b1) { b1 = b; i1 = i + 1 }
    if (c > b2) { b2 = c; i2 = i + 2 }
    if (d > b3) { b3 = d; i3 = i + 3 }
  }
  let best = b0; let id = i0
  if (b1 > best || (b1 === best && i1 < id)) { best = b1; id = i1 }
  if (b2 > best || (b2 === best && i2 < id)) { best = b2; id = i2 }
  if (b3 > best || (b3 === best && i3 < id)) { best = b3; id = i3 }
  for (let i = whole; i < scores.length; i++) if (scores[i] > best) { best = scores[i]; id = i }
  // Nothing above -inf (every score -inf or NaN): the first id, as a one-pass scan gives.
  return best === -Infinity ? 0 : id
}

/** The reference draw: walks `pool` (most likely first) until the uniform number runs out. */
export function draw (pool: Array<{ id: number, prob: number }>, rng: Rng): number {
  let u = rng.next()
  for (const c of pool) {
    u -= c.prob
    if (u < 0) return c.id
  }
  return pool[pool.length - 1].id // rounding left u a hair above zero
}

function penalised (p: SamplingParams): boolean {
  return p.repetitionPenalty !== 1 || p.frequencyPenalty !== 0 || p.presencePenalty !== 0
}

/**
 * Samples from one row of logits. Log-probabilities are under the model's own distribution;
 * `lse` (the row's log-sum-exp) comes from the graph when it exports one, which saves an
 * exp over the whole vocabulary per token here. Throws SamplingError (only) when every logit is
 * NaN or -inf; otherwise returns an id in range whose log-probability is finite.
 */
export function sampleToken (logits: Float32Array, p: SamplingParams, history: TokenHistory, rng: Rng, lse?: number): SampledToken {
  // A finite row is read as it is (one pass, no copy: greedy decoding of a batch pays nothing
  // more); only a row with NaN or ±inf is tamed into a float64 copy first. A row whose graph
  // log-sum-exp is finite needs no check: a NaN or +inf logit makes it NaN, and a -inf one is what
  // taming leaves it (the greedy id is then argmax's, without scan's per-logit test).
  const checked = lse !== undefined && Number.isFinite(lse)
  const seen = checked ? null : scan(logits)
  const finite = seen === null || seen.finite
  const row: Scores = finite ? logits : tamed(logits)
  if (!finite) best(row)
  const logprob = modelLogprob(row, lse)
  const top = topN(row, p.topLogprobs).map((id) => ({ id, logprob: logprob(id) }))
  // Penalties work on a float64 copy (a float32 one would overflow to inf at tiny penalties). They
  // never lower a score to -inf nor raise one above the largest double, so the best penalised
  // token is one the model gave a finite (or +inf) logit.
  let scores = row
  if (penalised(p)) {
    const copy = Float64Array.from(row)
    applyPenalties(copy, p, history)
    scores = copy
  }
  // Greedy: the scan's best id where it read these very scores, else one pass of argmax.
  const id = p.temperature > 0 ? drawToken(scores, p, rng) : seen?.finite === true && scores === logits ? seen.argmax : argmax(scores)
  return { id, logprob: logprob(id), top }
}
