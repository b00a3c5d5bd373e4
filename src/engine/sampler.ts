// Turns one row of logits into the next token. Order follows HF/TGI: repetition penalty, frequency
// and presence penalties, temperature, then the truncations (top_k, top_p, typical_p), then a draw.
import type { Rng } from './rng.ts'

export interface SamplingParams {
  temperature: number        // 0 = greedy
  topK: number               // 0 = off
  topP: number               // 1 = off
  typicalP: number           // 1 = off
  repetitionPenalty: number  // 1 = off; applied to every token of prompt and output (HF)
  frequencyPenalty: number   // 0 = off; OpenAI: minus count * penalty
  presencePenalty: number    // 0 = off; OpenAI: minus penalty if present
  topLogprobs: number        // alternatives returned per token (0 = none)
}

export const GREEDY: SamplingParams = {
  temperature: 0, topK: 0, topP: 1, typicalP: 1, repetitionPenalty: 1, frequencyPenalty: 0, presencePenalty: 0, topLogprobs: 0
}

export interface SampledToken {
  id: number
  logprob: number                                  // under the model's own distribution
  top: Array<{ id: number, logprob: number }>      // the topLogprobs most likely, same distribution
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

export function logSoftmax (logits: Float32Array): Float64Array {
  let max = -Infinity
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i]
  let sum = 0
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max)
  const lse = max + Math.log(sum)
  const out = new Float64Array(logits.length)
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] - lse
  return out
}

export function topN (values: ArrayLike<number>, n: number): number[] {
  const idx: number[] = []
  for (let i = 0; i < values.length; i++) {
    if (idx.length < n) { idx.push(i); idx.sort((a, b) => values[b] - values[a]); continue }
    if (values[i] > values[idx[n - 1]]) {
      idx[n - 1] = i
      idx.sort((a, b) => values[b] - values[a])
    }
  }
  return idx
}

export function applyPenalties (logits: Float32Array, p: SamplingParams, history: TokenHistory): void {
  if (p.repetitionPenalty !== 1) {
    for (const id of history.promptOrOutput) {
      logits[id] = logits[id] > 0 ? logits[id] / p.repetitionPenalty : logits[id] * p.repetitionPenalty
    }
  }
  if (p.frequencyPenalty !== 0 || p.presencePenalty !== 0) {
    for (const [id, count] of history.outputCounts) {
      logits[id] -= count * p.frequencyPenalty + p.presencePenalty
    }
  }
}

/** Candidate ids with probabilities after temperature and truncation, most likely first. */
export function candidates (logits: Float32Array, p: SamplingParams): Array<{ id: number, prob: number }> {
  const logp = logSoftmax(logits.map((x) => x / p.temperature))
  const probs = logp.map(Math.exp)
  // Truncations keep every token at or above a probability threshold; a native numeric sort of
  // the probabilities finds the thresholds without sorting 8k objects per token.
  const sorted = Float64Array.from(probs).sort().reverse()
  let threshold = 0
  if (p.topK > 0 && p.topK < sorted.length) threshold = sorted[p.topK - 1]
  if (p.topP < 1) {
    let sum = 0
    for (const q of sorted) {
      sum += q
      if (sum >= p.topP) { threshold = Math.max(threshold, q); break }
    }
  }
  let items: Array<{ id: number, prob: number }> = []
  for (let id = 0; id < probs.length; id++) if (probs[id] >= threshold && probs[id] > 0) items.push({ id, prob: probs[id] })
  if (p.typicalP < 1) {
    // Typical sampling (Meister et al.): keep tokens whose surprise is closest to the entropy.
    let entropy = 0
    for (let i = 0; i < logp.length; i++) if (probs[i] > 0) entropy -= probs[i] * logp[i]
    items.sort((a, b) => Math.abs(-Math.log(a.prob) - entropy) - Math.abs(-Math.log(b.prob) - entropy))
    items = keepMass(items, p.typicalP)
  }
  items.sort((a, b) => b.prob - a.prob)
  const total = items.reduce((s, c) => s + c.prob, 0)
  return items.map((c) => ({ id: c.id, prob: c.prob / total }))
}

function keepMass<T extends { prob: number }> (items: T[], mass: number): T[] {
  let sum = 0
  for (let i = 0; i < items.length; i++) {
    sum += items[i].prob
    if (sum >= mass) return items.slice(0, i + 1)
  }
  return items
}

export function argmax (values: ArrayLike<number>): number {
  let best = 0
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i
  return best
}

export function logSumExp (logits: Float32Array): number {
  let max = -Infinity
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i]
  let sum = 0
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max)
  return max + Math.log(sum)
}

function penalised (p: SamplingParams): boolean {
  return p.repetitionPenalty !== 1 || p.frequencyPenalty !== 0 || p.presencePenalty !== 0
}

/**
 * Samples from one row of logits. Log-probabilities are under the model's own distribution;
 * `lse` (the row's log-sum-exp) comes from the graph when it exports one, which saves an
 * exp over the whole vocabulary per token here.
 */
export function sampleToken (logits: Float32Array, p: SamplingParams, history: TokenHistory, rng: Rng, lse?: number): SampledToken {
  const logZ = lse ?? logSumExp(logits)
  const top = p.topLogprobs > 0 ? topN(logits, p.topLogprobs).map((t) => ({ id: t, logprob: logits[t] - logZ })) : []
  const scores = penalised(p) ? logits.slice() : logits
  applyPenalties(scores, p, history)
  let id: number
  if (p.temperature === 0) {
    id = argmax(scores)
  } else {
    const pool = candidates(scores, p)
    let u = rng.next()
    id = pool[pool.length - 1].id
    for (const c of pool) {
      u -= c.prob
      if (u < 0) { id = c.id; break }
    }
  }
  return { id, logprob: logits[id] - logZ, top }
}
