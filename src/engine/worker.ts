// The model's worker thread: owns the ONNX Runtime session (whose run blocks its thread), the
// scheduler, sampling and detokenization. Every step's token events go to the main thread in one
// message. States travel as Float32Arrays: per sequence while it prefills or waits, stacked along
// the batch axis while it decodes in a batch (restacked only when the batch's members change).
import { parentPort, workerData } from 'node:worker_threads'
import ort from 'onnxruntime-node'
import { ONNX_NAMES } from '../contract/onnx-io.ts'
import { stateElements, stateShape, type StateTensorSpec } from '../models/manifest.ts'
import { StreamingDetokenizer } from './detokenizer.ts'
import { createSession } from './ort-session.ts'
import type { FinishReason, FromWorker, SeqEvent, ToWorker, WireRequest, WireResult, WorkerInit } from './protocol.ts'
import { Rng } from './rng.ts'
import { sampleToken, TokenHistory } from './sampler.ts'
import { DecodeScheduler, type Schedulable } from './scheduler.ts'

const init = workerData as WorkerInit
const port = parentPort!
const { manifest } = init
const recurrent = manifest.architecture !== 'softmax'
const specs: StateTensorSpec[] = manifest.state
const vocab = manifest.vocab_size

function tokenBytes (id: number): Uint8Array {
  return init.tokenBytes.subarray(init.tokenOffsets[id], init.tokenOffsets[id + 1])
}

class Sequence implements Schedulable {
  prefillRemaining: number
  paused = false
  state: Float32Array[] | null
  next: number | null = null
  readonly generated: number[] = []
  readonly history = new TokenHistory()
  readonly rng: Rng
  readonly detok: StreamingDetokenizer
  readonly stopIds: Set<number>
  started = false
  queueMs = 0
  /** Tokens fed by prefill; the last input token is held back when nothing is to be generated. */
  readonly feed: number[]
  fed = 0

  constructor (readonly id: number, readonly req: WireRequest, public position: number) {
    this.state = req.state ?? specs.map((s) => new Float32Array(stateElements(s, position)))
    this.feed = req.maxNewTokens === 0 ? req.inputIds.slice(0, -1) : req.inputIds
    this.prefillRemaining = this.feed.length
    if (req.maxNewTokens === 0 && req.inputIds.length > 0) this.next = req.inputIds[req.inputIds.length - 1]
    this.history.addPrompt(req.inputIds)
    this.rng = new Rng(req.seed)
    this.detok = new StreamingDetokenizer(tokenBytes, req.stop)
    this.stopIds = new Set(req.stopTokenIds)
  }
}

function tensor (data: Float32Array, dims: number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims)
}

function ids2d (rows: number[][]): ort.Tensor {
  const flat = BigInt64Array.from(rows.flat().map((x) => BigInt(x)))
  return new ort.Tensor('int64', flat, [rows.length, rows[0].length])
}

/** Row r of a tensor whose axis 1 is the batch: [L, B, ...rest] -> [L, 1, ...rest]. */
function extractRow (data: Float32Array, layers: number, batch: number, r: number): Float32Array {
  const row = data.length / (layers * batch)
  const out = new Float32Array(layers * row)
  for (let l = 0; l < layers; l++) out.set(data.subarray((l * batch + r) * row, (l * batch + r + 1) * row), l * row)
  return out
}

function stackRows (rows: Float32Array[], layers: number): Float32Array {
  const batch = rows.length
  const row = rows[0].length / layers
  const out = new Float32Array(layers * batch * row)
  for (let r = 0; r < batch; r++) {
    for (let l = 0; l < layers; l++) out.set(rows[r].subarray(l * row, (l + 1) * row), (l * batch + r) * row)
  }
  return out
}

let session: ort.InferenceSession
const scheduler = new DecodeScheduler<Sequence>({ maxBatch: recurrent ? init.runtime.maxBatch : 1, prefillChunk: init.runtime.prefillChunk })
const byId = new Map<number, Sequence>()
/** Decode states stacked along the batch axis for `members`, reused while the members stay. */
let batch: { members: Sequence[], state: Float32Array[] } | null = null
let wake: (() => void) | null = null
let shuttingDown = false

function unstackBatch (): void {
  if (batch === null) return
  const b = batch
  b.members.forEach((seq, r) => {
    if (seq.state === null) seq.state = b.state.map((d) => extractRow(d, manifest.layers, b.members.length, r))
  })
  batch = null
}

function finish (seq: Sequence, reason: FinishReason, stopSequence: string | null, events: SeqEvent[]): void {
  if (seq.state === null) unstackBatch()
  const tail = reason === 'stop' ? '' : seq.detok.finish()
  scheduler.remove(seq)
  byId.delete(seq.id)
  const result: WireResult = {
    finishReason: reason,
    stopSequence,
    tokens: seq.generated,
    text: seq.detok.generated,
    position: seq.position,
    pending: seq.next === null ? [] : [seq.next],
    state: seq.state!,
    queueMs: seq.queueMs
  }
  // Text released only at the end (a held-back stop prefix, an incomplete character) joins the
  // last token's event, so every event stays one token.
  const last = events.findLast((e) => e.id === seq.id && e.kind === 'token')
  if (tail !== '' && last !== undefined && last.kind === 'token') last.token.text += tail
  events.push({ id: seq.id, kind: 'end', result })
}

/** Samples the next token of `seq` from its logits row and reports it; finishes if it is done. */
function advance (seq: Sequence, logits: Float32Array, lse: number | undefined, events: SeqEvent[]): void {
  if (seq.req.maxNewTokens === 0) { finish(seq, 'length', null, events); return }
  const t = sampleToken(logits, seq.req.params, seq.history, seq.rng, lse)
  seq.history.addOutput(t.id)
  seq.generated.push(t.id)
  seq.next = t.id
  const first = seq.generated.length === 1
  if (seq.stopIds.has(t.id)) {
    events.push({ id: seq.id, kind: 'token', token: { id: t.id, text: '', logprob: t.logprob, special: true, top: t.top }, first, queueMs: seq.queueMs })
    finish(seq, 'eos_token', null, events)
    return
  }
  const pushed = seq.detok.push(t.id)
  events.push({ id: seq.id, kind: 'token', token: { id: t.id, text: pushed.text, logprob: t.logprob, special: false, top: t.top }, first, queueMs: seq.queueMs })
  if (pushed.stop !== undefined) finish(seq, 'stop', pushed.stop, events)
  else if (seq.generated.length >= seq.req.maxNewTokens) finish(seq, 'length', null, events)
}

function feeds (inputIds: number[][], positions: number[], state: Float32Array[]): Record<string, ort.Tensor> {
  const b = inputIds.length
  const out: Record<string, ort.Tensor> = {
    [ONNX_NAMES.inputIds]: ids2d(inputIds),
    [ONNX_NAMES.positionOffset]: new ort.Tensor('int64', BigInt64Array.from(positions.map((p) => BigInt(p))), [b])
  }
  specs.forEach((s, i) => { out[s.name] = tensor(state[i], stateShape(s, positions[0], b)) })
  return out
}

/** The row's log-sum-exp when the graph exports one (an optional `logsumexp` output). */
function lseOf (out: ort.InferenceSession.OnnxValueMapType, row: number): number | undefined {
  const t = out[ONNX_NAMES.logsumexp] as ort.Tensor | undefined
  return t === undefined ? undefined : (t.data as Float32Array)[row]
}

/** One sequence alone through the graph (a prefill chunk, or a softmax decode step); samples if asked. */
async function runAlone (seq: Sequence, ids: number[], sample: boolean, events: SeqEvent[]): Promise<void> {
  const out = await session.run(feeds([ids], [seq.position], seq.state!))
  seq.state = specs.map((s) => out[s.output].data as Float32Array)
  seq.position += ids.length
  if (sample) advance(seq, (out[ONNX_NAMES.logits].data as Float32Array).subarray(0, vocab), lseOf(out, 0), events)
}

async function prefill (seq: Sequence, n: number, events: SeqEvent[]): Promise<void> {
  const chunk = seq.feed.slice(seq.fed, seq.fed + n)
  seq.fed += n
  seq.prefillRemaining -= n
  await runAlone(seq, chunk, seq.prefillRemaining === 0, events)
}

async function decode (seqs: Sequence[], events: SeqEvent[]): Promise<void> {
  if (!recurrent) {
    await runAlone(seqs[0], [seqs[0].next!], true, events)
    return
  }
  if (batch === null || batch.members.length !== seqs.length || batch.members.some((s, i) => s !== seqs[i])) {
    unstackBatch()
    batch = { members: seqs, state: specs.map((_, i) => stackRows(seqs.map((s) => s.state![i]), manifest.layers)) }
    for (const s of seqs) s.state = null
  }
  const b = batch
  const out = await session.run(feeds(seqs.map((s) => [s.next!]), seqs.map((s) => s.position), b.state))
  b.state = specs.map((s) => out[s.output].data as Float32Array)
  const logits = out[ONNX_NAMES.logits].data as Float32Array
  seqs.forEach((seq, r) => {
    seq.position += 1
    advance(seq, logits.subarray(r * vocab, (r + 1) * vocab), lseOf(out, r), events)
  })
}

function transferables (events: SeqEvent[]): ArrayBuffer[] {
  const list: ArrayBuffer[] = []
  for (const e of events) {
    if (e.kind !== 'end') continue
    e.result.state = e.result.state.map((d) => (d.byteOffset === 0 && d.byteLength === d.buffer.byteLength ? d : d.slice()))
    for (const d of e.result.state) list.push(d.buffer as ArrayBuffer)
  }
  return list
}

function post (msg: FromWorker, events: SeqEvent[]): void {
  port.postMessage(msg, transferables(events))
}

async function loop (): Promise<void> {
  while (!shuttingDown) {
    const step = scheduler.next()
    if (step.kind === 'idle') {
      await new Promise<void>((resolve) => { wake = resolve })
      wake = null
      continue
    }
    const events: SeqEvent[] = []
    const t0 = performance.now()
    const seqs = step.kind === 'prefill' ? [step.seq] : step.seqs
    for (const s of seqs) {
      if (!s.started) { s.started = true; s.queueMs = Date.now() - s.req.submittedAt }
    }
    try {
      if (step.kind === 'prefill') await prefill(step.seq, step.tokens, events)
      else await decode(step.seqs, events)
    } catch (err) {
      batch = null
      for (const s of seqs) {
        scheduler.remove(s)
        byId.delete(s.id)
        events.push({ id: s.id, kind: 'error', message: (err as Error).message })
      }
    }
    const ms = performance.now() - t0
    post({ type: 'step', kind: step.kind, ms, batch: seqs.length, tokens: step.kind === 'prefill' ? step.tokens : seqs.length, events }, events)
    // Let cancel / pause messages in between steps.
    await new Promise((resolve) => setImmediate(resolve))
  }
}

function onMessage (msg: ToWorker): void {
  if (msg.type === 'generate') {
    const seq = new Sequence(msg.id, msg.req, msg.req.position)
    if (seq.feed.length === 0 && seq.next === null) {
      post({ type: 'events', events: [{ id: msg.id, kind: 'error', message: 'nothing to condition on: empty input on an empty state' }] }, [])
      return
    }
    byId.set(msg.id, seq)
    scheduler.add(seq)
    if (seq.prefillRemaining === 0 && msg.req.maxNewTokens === 0) {
      const events: SeqEvent[] = []
      finish(seq, 'length', null, events)
      post({ type: 'events', events }, events)
    }
  } else if (msg.type === 'shutdown') {
    shuttingDown = true
  } else {
    const seq = byId.get(msg.id)
    if (seq === undefined) return
    if (msg.type === 'cancel') {
      const events: SeqEvent[] = []
      finish(seq, 'cancelled', null, events)
      post({ type: 'events', events }, events)
    } else {
      seq.paused = msg.type === 'pause'
    }
  }
  wake?.()
}

try {
  session = await createSession(init.modelPath, init.runtime)
  port.on('message', onMessage)
  port.postMessage({ type: 'ready', inputs: [...session.inputNames], outputs: [...session.outputNames] } satisfies FromWorker)
  await loop()
  await session.release()
} catch (err) {
  port.postMessage({ type: 'init-error', message: (err as Error).message } satisfies FromWorker)
}
