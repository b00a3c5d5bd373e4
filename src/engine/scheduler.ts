// Decides what the engine worker runs next. Pure bookkeeping, no tensors: unit-testable.
//
// Policy (continuous batching):
// - A sequence first needs prefill: its input tokens are fed in chunks of at most `prefillChunk`.
//   A prefill step feeds the same number of tokens T to every row it takes: T is the oldest waiting
//   sequence's next chunk, and the step takes the waiting sequences whose next chunk is T tokens
//   too (arrival order, that one first; long prompts all have full chunks), as many as keep the
//   step within `prefillChunk` tokens in all and `maxPrefillBatch` rows. So requests that arrive
//   together are prefilled together, and a long prompt still costs everyone at most one chunk of
//   latency per step.
// - Sequences that have a token to decode are decoded together, up to `maxBatch` rows per run.
//   When more are ready than fit, rows rotate so every sequence advances.
// - Prefill and decode alternate while both have work, so neither starves.
// - Paused sequences (a slow reader) are skipped. Cancelled ones are removed by the worker (after
//   the step in flight if they are part of it: see runner.ts), so they never reach this policy.

export interface SchedulerOptions<S> {
  maxBatch: number
  prefillChunk: number
  /** Rows of a prefill step at most (default: maxBatch). */
  maxPrefillBatch?: number
  /** Whether `other` may be prefilled in the same step as `head` (default: always). */
  prefillTogether?: (head: S, other: S) => boolean
}

export interface Schedulable {
  readonly id: number
  /** Tokens still to feed before the first decode step. */
  prefillRemaining: number
  paused: boolean
}

export type Step<S> =
  | { kind: 'prefill', seqs: S[], tokens: number }
  | { kind: 'decode', seqs: S[] }
  | { kind: 'idle' }

export class DecodeScheduler<S extends Schedulable> {
  private readonly seqs: S[] = []
  private lastWasPrefill = false
  private rotation = 0

  constructor (readonly options: SchedulerOptions<S>) {
    if (options.maxBatch < 1 || options.prefillChunk < 1) throw new RangeError('maxBatch and prefillChunk must be >= 1')
  }

  add (seq: S): void { this.seqs.push(seq) }

  remove (seq: S): void {
    const i = this.seqs.indexOf(seq)
    if (i !== -1) this.seqs.splice(i, 1)
  }

  next (): Step<S> {
    const runnable = this.seqs.filter((s) => !s.paused)
    const prefilling = runnable.filter((s) => s.prefillRemaining > 0)
    const decoding = runnable.filter((s) => s.prefillRemaining === 0)
    if (prefilling.length > 0 && (!this.lastWasPrefill || decoding.length === 0)) {
      this.lastWasPrefill = true
      return this.prefill(prefilling)
    }
    this.lastWasPrefill = false
    if (decoding.length === 0) return { kind: 'idle' }
    if (decoding.length <= this.options.maxBatch) return { kind: 'decode', seqs: decoding }
    const start = this.rotation % decoding.length
    this.rotation += this.options.maxBatch
    const picked: S[] = []
    for (let i = 0; i < this.options.maxBatch; i++) picked.push(decoding[(start + i) % decoding.length])
    return { kind: 'decode', seqs: picked }
  }

  private prefill (waiting: S[]): Step<S> {
    const head = waiting[0]
    const tokens = Math.min(head.prefillRemaining, this.options.prefillChunk)
    const rows = Math.max(1, Math.min(this.options.maxPrefillBatch ?? this.options.maxBatch, Math.floor(this.options.prefillChunk / tokens)))
    const together = this.options.prefillTogether
    const seqs = [head]
    for (const s of waiting.slice(1)) {
      if (seqs.length >= rows) break
      // Only rows whose own next chunk is as long: a row sharing a shorter step would be slowed.
      if (Math.min(s.prefillRemaining, this.options.prefillChunk) === tokens && (together === undefined || together(head, s))) seqs.push(s)
    }
    return { kind: 'prefill', seqs, tokens }
  }
}
