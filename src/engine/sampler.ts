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

/**
 * Candidate ids with probabilities after temperature (> 0) and truncation, most likely first.
 * Never empty: the best-scoring token always survives every truncation.
 */
export function candidates (scores: ArrayLike<number>, p: SamplingParams): Array<{ id: number, prob: number }> {
  const s = tamed(scores)
  const max = best(s)
  // (x - max) / T lies in [-inf, 0] for every T > 0, where x / T overflows for tiny T.
  const temperature = Math.min(p.temperature, Number.MAX_VALUE)
  const logp = new Float64Array(s.length)
  let sum = 0
  for (let i = 0; i < s.length; i++) {
    logp[i] = (s[i] - max) / temperature
    sum += Math.exp(logp[i])
  }
  const logSum = Math.log(sum) // sum >= 1: the best token contributes exp(0)
  for (let i = 0; i < logp.length; i++) logp[i] -= logSum
  const probs = logp.map(Math.exp)
  // Truncations keep every token at or above a probability threshold; a native numeric sort of
  // the probabilities finds the thresholds without sorting 8k objects per token. Each threshold
  // is at most the best token's probability, so that token is always kept.
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
  if (p.typicalP < 1) {
    // Typical sampling (Meister et al.): keep tokens whose surprise is closest to the entropy.
    let entropy = 0
    for (let i = 0; i < logp.length; i++) if (probs[i] > 0) entropy -= probs[i] * logp[i]
    const distance = (c: { prob: number }): number => Math.abs(-Math.log(c.prob) - entropy)
    items.sort((a, b) => distance(a) - distance(b))
    items = keepMass(items, p.typicalP)
  }
  items.sort((a, b) => b.prob - a.prob)
  const total = items.reduce((t, c) => t + c.prob, 0)
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

function argmax (scores: Scores): number {
  let bestId = 0
  for (let i = 1; i < scores.length; i++) if (scores[i] > scores[bestId]) bestId = i
  return bestId
}

function draw (pool: Array<{ id: number, prob: number }>, rng: Rng): number {
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
  // more); only a row with NaN or ±inf is tamed into a float64 copy first.
  const seen = scan(logits)
  const row: Scores = seen.finite ? logits : tamed(logits)
  if (!seen.finite) best(row)
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
  const greedyOnRow = scores === row && seen.finite
  const id = p.temperature > 0 ? draw(candidates(scores, p), rng) : greedyOnRow ? seen.argmax : argmax(scores)
  return { id, logprob: logprob(id), top }
}
