// Runs the scheduler's steps through the ONNX Runtime session: a prefill chunk of one sequence, or
// one decode step of a batch. A row that fails (its sampling, or the graph on its inputs) fails
// alone: its neighbours in the batch get their tokens as if it had never been there.
import ort from '#onnxruntime'
import { ONNX_NAMES } from '../contract/onnx-io.ts'
import type { Manifest } from '../models/manifest.ts'
import { DecodeBatch } from './batch-state.ts'
import type { SeqEvent } from './protocol.ts'
import { DecodeScheduler, type Step } from './scheduler.ts'
import type { Outputs, StepGraphs, StepResult } from './step-graphs.ts'
import type { Sequence } from './sequence.ts'


export class StepRunner {
  readonly scheduler: DecodeScheduler<Sequence>
  private readonly batch: DecodeBatch<Sequence>
  private readonly recurrent: boolean
  private readonly vocab: number

  constructor (private readonly graphs: StepGraphs, private readonly manifest: Manifest, options: { maxBatch: number, prefillChunk: number }) {
    this.recurrent = manifest.architecture !== 'softmax'
    this.vocab = manifest.vocab_size
    // A softmax KV cache grows per sequence: those decode one at a time.
    this.scheduler = new DecodeScheduler<Sequence>({ maxBatch: this.recurrent ? options.maxBatch : 1, prefillChunk: options.prefillChunk })
    this.batch = new DecodeBatch<Sequence>(manifest.state, manifest.layers)
  }

  add (seq: Sequence): void { this.scheduler.add(seq) }

  /** Ends a sequence now (finished, cancelled or failed): it leaves the scheduler with its own state. */
  end (seq: Sequence, events: SeqEvent[], outcome: { reason: Parameters<Sequence['finish']>[0] } | { error: string }): void {
    if (seq.finished) return
    if (seq.state === null) this.batch.release()
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
      const { ids, last } = step.seq.takePrefill(step.tokens)
      await this.runAlone(step.seq, ids, last, events)
    } else if (!this.recurrent || step.seqs.length === 1) {
      if (step.seqs[0].state === null) this.batch.release()
      await this.runAlone(step.seqs[0], [step.seqs[0].decodeInput()], true, events)
    } else {
      await this.decodeBatch(step.seqs, events)
    }
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

  private async decodeBatch (seqs: Sequence[], events: SeqEvent[]): Promise<void> {
    const state = this.batch.stateFor(seqs)
    let step: StepResult
    try {
      step = await this.graphs.run(seqs.map((s) => [s.decodeInput()]), seqs.map((s) => s.position), state, this.batch.takeSpare())
    } catch {
      // The batch failed as a whole: run each row alone, so only the row that cannot run fails.
      this.batch.release()
      for (const seq of seqs) await this.runAlone(seq, [seq.decodeInput()], true, events)
      return
    }
    this.batch.update(step.state)
    seqs.forEach((seq, r) => {
      seq.advance(1)
      this.sampleRow(seq, step.out, r, events)
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
