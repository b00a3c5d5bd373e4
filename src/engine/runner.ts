// Runs the scheduler's steps through the ONNX Runtime session: a prefill chunk of one sequence, or
// one decode step of a batch. A row that fails (its sampling, or the graph on its inputs) fails
// alone: its neighbours in the batch get their tokens as if it had never been there.
import ort from 'onnxruntime-node'
import { ONNX_NAMES } from '../contract/onnx-io.ts'
import type { Manifest } from '../models/manifest.ts'
import { DecodeBatch, stepFeeds } from './batch-state.ts'
import type { SeqEvent } from './protocol.ts'
import { DecodeScheduler, type Step } from './scheduler.ts'
import type { Sequence } from './sequence.ts'

type Outputs = ort.InferenceSession.OnnxValueMapType

/** The step graph (any number of tokens per row) and the graph for one token per row: decode.onnx
 * where the model folder has it, else the same session. */
export interface StepSessions {
  step: ort.InferenceSession
  decode: ort.InferenceSession
}

export class StepRunner {
  readonly scheduler: DecodeScheduler<Sequence>
  private readonly batch: DecodeBatch<Sequence>
  private readonly recurrent: boolean
  private readonly vocab: number

  constructor (private readonly sessions: StepSessions, private readonly manifest: Manifest, options: { maxBatch: number, prefillChunk: number }) {
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
    let out: Outputs
    const session = ids.length === 1 ? this.sessions.decode : this.sessions.step
    try {
      out = await session.run(this.tensors(stepFeeds(this.manifest.state, [ids], [seq.position], seq.state!)))
    } catch (err) {
      this.end(seq, events, { error: `model run failed: ${(err as Error).message}` })
      return
    }
    seq.state = this.manifest.state.map((s) => out[s.output].data as Float32Array)
    seq.advance(ids.length)
    if (sample) this.sampleRow(seq, out, 0, events)
  }

  private async decodeBatch (seqs: Sequence[], events: SeqEvent[]): Promise<void> {
    const state = this.batch.stateFor(seqs)
    let out: Outputs
    try {
      out = await this.sessions.decode.run(this.tensors(stepFeeds(this.manifest.state, seqs.map((s) => [s.decodeInput()]), seqs.map((s) => s.position), state)))
    } catch {
      // The batch failed as a whole: run each row alone, so only the row that cannot run fails.
      this.batch.release()
      for (const seq of seqs) await this.runAlone(seq, [seq.decodeInput()], true, events)
      return
    }
    this.batch.update(this.manifest.state.map((s) => out[s.output].data as Float32Array))
    seqs.forEach((seq, r) => {
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

  private tensors (feeds: ReturnType<typeof stepFeeds>): Record<string, ort.Tensor> {
    const out: Record<string, ort.Tensor> = {}
    for (const [name, f] of Object.entries(feeds)) out[name] = new ort.Tensor(f.type, f.data, f.dims)
    return out
  }
}
