// Runs the scheduler's steps through the ONNX Runtime session: a prefill chunk of one or more
// sequences, or one decode step of a batch. A row that fails (its sampling, or the graph on its
// inputs) fails alone: its neighbours get their tokens as if it had never been there.
import ort from '#onnxruntime'
import { ONNX_NAMES } from '../contract/onnx-io.ts'
import { stateElements, type Manifest } from '../models/manifest.ts'
import { DecodeBatch, extractRow, PaddedCacheBatch, Scratch, stackRows, stackRowsInto } from './batch-state.ts'
import type { SeqEvent } from './protocol.ts'
import { DecodeScheduler, type Step } from './scheduler.ts'
import type { Outputs, StepGraphs, StepResult } from './step-graphs.ts'
import type { Sequence } from './sequence.ts'

export class StepRunner {
  readonly scheduler: DecodeScheduler<Sequence>
  /** The decoding sequences' state: a recurrent model's in slots; a softmax model's KV caches
   * padded to one length where its decode graph masks padding; null: a KV cache decodes alone. */
  private readonly batch: DecodeBatch<Sequence> | PaddedCacheBatch<Sequence> | null
  private readonly vocab: number
  /** A recurrent model's prefill state, stacked: its input and output, kept from step to step. */
  private readonly prefillIn: Scratch[]
  private readonly prefillOut: Scratch[]

  constructor (private readonly graphs: StepGraphs, private readonly manifest: Manifest, options: { maxBatch: number, prefillChunk: number }) {
    const recurrent = manifest.architecture !== 'softmax'
    const padded = !recurrent && manifest.decode_padded_cache === true && graphs.hasDecodeGraph
    this.vocab = manifest.vocab_size
    this.prefillIn = manifest.state.map(() => new Scratch())
    this.prefillOut = manifest.state.map(() => new Scratch())
    this.scheduler = new DecodeScheduler<Sequence>({
      // A softmax KV cache grows per sequence: caches of different lengths decode together only
      // through a decode graph that masks their padding, else one at a time; they prefill
      // together only at equal past lengths (the stacked cache has one length).
      maxBatch: recurrent || padded ? options.maxBatch : 1,
      maxPrefillBatch: options.maxBatch,
      prefillChunk: options.prefillChunk,
      prefillTogether: recurrent ? undefined : (a, b) => a.position === b.position
    })
    this.batch = recurrent
      ? new DecodeBatch<Sequence>(manifest.state, manifest.layers)
      : padded ? new PaddedCacheBatch<Sequence>(manifest.state, manifest.layers) : null
  }

  add (seq: Sequence): void { this.scheduler.add(seq) }

  /** Ends a sequence now (finished, cancelled or failed): it leaves the scheduler with its own
   * state, or none where its request discards the state (WireRequest.discardState). */
  end (seq: Sequence, events: SeqEvent[], outcome: { reason: Parameters<Sequence['finish']>[0] } | { error: string }): void {
    if (seq.finished) return
    const keep = seq.req.discardState !== true
    if (seq.state === null) this.batch?.evict(seq, keep)
    else if (!keep) seq.state = []
    this.scheduler.remove(seq)
    if ('error' in outcome) {
      seq.finished = true
      events.push({ id: seq.id, kind: 'error', message: outcome.error })
    } else {
      seq.finish(outcome.reason, events)
    }
  }

  async run (step: Exclude<Step<Sequence>, { kind: 'idle' }>, events: SeqEvent[]): Promise<void> {
    if (step.kind === 'prefill') {
      await this.prefill(step.seqs, step.tokens, events)
    } else if (this.batch === null) {
      await this.runAlone(step.seqs[0], [step.seqs[0].decodeInput()], true, events)
    } else {
      await this.decodeBatch(this.batch, step.seqs, events)
    }
  }

  /** `tokens` more prompt tokens of every one of `seqs`, in one run; each samples its first token
   * if that completes its prompt.
   *
   * A recurrent model's prefill allocates nothing: the stacked input and output state are arrays
   * kept from step to step (`prefillIn`, `prefillOut`), a new sequence's zero state is filled in
   * rather than read (sharedZeros), and a sequence whose prompt is done is copied from the output
   * straight into its decode slot. (Before: five new arrays of its state's size per sequence, at
   * 32 new streams of sotu-t2r-q8 11% of the worker's time, most of it first-touch page faults.) */
  private async prefill (seqs: Sequence[], tokens: number, events: SeqEvent[]): Promise<void> {
    const chunks = seqs.map((s) => s.takePrefill(tokens))
    const slots = this.batch instanceof DecodeBatch ? this.batch : null
    if (seqs.length === 1 && slots === null) {
      await this.runAlone(seqs[0], chunks[0].ids, chunks[0].last, events)
      return
    }
    const layers = this.manifest.layers
    const b = seqs.length
    let step: StepResult
    try {
      const rows = this.manifest.state.map((_, i) => seqs.map((s) => s.state![i]))
      const sizes = this.manifest.state.map((spec) => stateElements(spec, 0, b))
      const state = rows.map((r, i) => slots === null ? stackRows(r, layers) : stackRowsInto(r, layers, this.prefillIn[i].take(sizes[i])))
      const into = slots === null ? undefined : sizes.map((n, i) => this.prefillOut[i].take(n))
      step = await this.graphs.run(chunks.map((c) => c.ids), seqs.map((s) => s.position), state, into)
    } catch (err) {
      if (b === 1) {
        this.end(seqs[0], events, { error: `model run failed: ${(err as Error).message}` })
        return
      }
      // Row isolation, as for a decode batch: each alone, so only a row that cannot run fails.
      for (const [r, seq] of seqs.entries()) await this.runAlone(seq, chunks[r].ids, chunks[r].last, events)
      return
    }
    seqs.forEach((seq, r) => {
      if (slots !== null && chunks[r].last) slots.admit(seq, step.state, r, b)
      else seq.state = step.state.map((d) => extractRow(d, layers, b, r))
      seq.advance(tokens)
      if (chunks[r].last) this.sampleRow(seq, step.out, r, events)
    })
  }

  /** One sequence alone through the graph; samples its next token if `sample`. */
  private async runAlone (seq: Sequence, ids: number[], sample: boolean, events: SeqEvent[]): Promise<void> {
    let step: StepResult
    try {
      step = await this.graphs.run([ids], [seq.position], seq.state!)
    } catch (err) {
      this.end(seq, events, { error: `model run failed: ${(err as Error).message}` })
      return
    }
    seq.state = step.state
    seq.advance(ids.length)
    if (sample) this.sampleRow(seq, step.out, 0, events)
  }

  private async decodeBatch (batch: DecodeBatch<Sequence> | PaddedCacheBatch<Sequence>, seqs: Sequence[], events: SeqEvent[]): Promise<void> {
    // A copy: sampling may end a member, which leaves the batch (and reorders its rows).
    const rows = [...batch.arrange(seqs)]
    const ids = rows.map((s) => s.decodeInput())
    const positions = rows.map((s) => s.position)
    let out: Outputs
    try {
      out = batch instanceof DecodeBatch
        ? await this.graphs.decodeBatch(ids, positions, batch)
        : await this.graphs.decodeCaches(ids, positions, batch)
    } catch (err) {
      // The batch failed as a whole (its state untouched: a step's outputs replace it only when
      // the step succeeds): run each row alone, so only the row that cannot run fails.
      if (rows.length === 1) {
        this.end(rows[0], events, { error: `model run failed: ${(err as Error).message}` })
        return
      }
      batch.release()
      for (const seq of rows) await this.runAlone(seq, [seq.decodeInput()], true, events)
      return
    }
    rows.forEach((seq, r) => {
      seq.advance(1)
      this.sampleRow(seq, out, r, events)
    })
  }

  private sampleRow (seq: Sequence, out: Outputs, row: number, events: SeqEvent[]): void {
    const logits = (out[ONNX_NAMES.logits].data as Float32Array).subarray(row * this.vocab, (row + 1) * this.vocab)
    // The graph's optional `logsumexp` output saves an exp over the vocabulary per token.
    const lse = (out[ONNX_NAMES.logsumexp] as ort.Tensor | undefined)?.data[row] as number | undefined
    let done
    try {
      done = seq.sample(logits, lse, events)
    } catch (err) {
      this.end(seq, events, { error: `sampling failed: ${(err as Error).message}` })
      return
    }
    if (done !== null) this.end(seq, events, { reason: done.reason })
  }
}
