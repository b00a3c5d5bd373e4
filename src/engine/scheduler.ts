// Decides what the engine worker runs next. Pure bookkeeping, no tensors: unit-testable.
//
// Policy (continuous batching):
// - A sequence first needs prefill: its input tokens are fed in chunks of at most `prefillChunk`,
//   one sequence per run, so a long prompt costs everyone at most one chunk of latency per step.
// - Sequences that have a token to decode are decoded together, up to `maxBatch` rows per run.
//   When more are ready than fit, rows rotate so every sequence advances.
// - Prefill and decode alternate while both have work, so neither starves.
// - Paused sequences (a slow reader) are skipped. Cancelled ones are removed by the worker (after
//   the step in flight if they are part of it: see runner.ts), so they never reach this policy.

export interface SchedulerOptions {
  maxBatch: number
  prefillChunk: number
}

export interface Schedulable {
  readonly id: number
  /** Tokens still to feed before the first decode step. */
  prefillRemaining: number
  paused: boolean
}

export type Step<S> =
  | { kind: 'prefill', seq: S, tokens: number }
  | { kind: 'decode', seqs: S[] }
  | { kind: 'idle' }

export class DecodeScheduler<S extends Schedulable> {
  private readonly seqs: S[] = []
  private lastWasPrefill = false
  private rotation = 0

  constructor (readonly options: SchedulerOptions) {
    if (options.maxBatch < 1 || options.prefillChunk < 1) throw new RangeError('maxBatch and prefillChunk must be >= 1')
  }

  add (seq: S): void { this.seqs.push(seq) }

  remove (seq: S): void {
    const i = this.seqs.indexOf(seq)
    if (i !== -1) this.seqs.splice(i, 1)
  }

  next (): Step<S> {
    const runnable = this.seqs.filter((s) => !s.paused)
    const prefilling = runnable.find((s) => s.prefillRemaining > 0)
    const decoding = runnable.filter((s) => s.prefillRemaining === 0)
    if (prefilling !== undefined && (!this.lastWasPrefill || decoding.length === 0)) {
      this.lastWasPrefill = true
      return { kind: 'prefill', seq: prefilling, tokens: Math.min(prefilling.prefillRemaining, this.options.prefillChunk) }
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
}
