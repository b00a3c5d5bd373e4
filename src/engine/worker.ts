// The model's worker thread: a thin message loop around the StepRunner (runner.ts), which owns the
// ONNX Runtime session (whose run blocks this thread). Steps' token events go to the main thread
// in one message per step, or per few steps (runtime.streamIntervalMs: posting wakes the main
// thread, ~50 µs of this thread's time on a VM); a finished sequence's state travels back as
// transferred buffers.
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads'
import { isSharedZeros } from './batch-state.ts'
import { bindingInUse, createSession, decodeGraphPath } from './ort-session.ts'
import type { FromWorker, SeqEvent, StepRecord, ToWorker, WorkerInit } from './protocol.ts'
import { StepRunner } from './runner.ts'
import { StepGraphs } from './step-graphs.ts'
import { Sequence } from './sequence.ts'

const init = workerData as WorkerInit
const port = parentPort!
const byId = new Map<number, Sequence>()
let wake: (() => void) | null = null
let shuttingDown = false
/** Cancels that arrive while a step runs wait for its end: the step still owns its sequences' state. */
let stepping = false
const cancelAfterStep = new Set<number>()

const tokenBytes = (id: number): Uint8Array => init.tokenBytes.subarray(init.tokenOffsets[id], init.tokenOffsets[id + 1])

function post (msg: FromWorker, events: SeqEvent[]): void {
  const transfer: ArrayBuffer[] = []
  for (const e of events) {
    if (e.kind === 'end') {
      // A state that is a view into a larger buffer is copied: only whole buffers transfer. So is
      // the shared zero state (of a sequence that never ran): the worker keeps using it.
      e.result.state = e.result.state.map((d) => (d.byteOffset === 0 && d.byteLength === d.buffer.byteLength && !isSharedZeros(d) ? d : d.slice()))
      for (const d of e.result.state) transfer.push(d.buffer as ArrayBuffer)
    }
    if (e.kind !== 'token') byId.delete(e.id)
  }
  port.postMessage(msg, transfer)
}

/** Steps run and events produced since the last post. */
let heldSteps: StepRecord[] = []
let heldEvents: SeqEvent[] = []
let lastPost = 0

/** Posts what is held: at once when `urgent` (a first token, an end, an error, the worker going
 * idle) or when the last post is streamIntervalMs old, else with a later step's. */
function flush (urgent: boolean): void {
  if (heldSteps.length === 0 && heldEvents.length === 0) return
  const now = performance.now()
  if (!urgent && now - lastPost < init.runtime.streamIntervalMs) return
  const events = heldEvents
  post({ type: 'steps', steps: heldSteps, events }, events)
  heldSteps = []
  heldEvents = []
  lastPost = now
}

/** Events outside a step (a refusal, a cancel between steps): posted at once, after what is held. */
function send (events: SeqEvent[]): void {
  for (const e of events) heldEvents.push(e)
  flush(true)
}

async function loop (runner: StepRunner): Promise<void> {
  while (!shuttingDown) {
    const step = runner.scheduler.next()
    if (step.kind === 'idle') {
      flush(true)
      await new Promise<void>((resolve) => { wake = resolve })
      wake = null
      continue
    }
    const events: SeqEvent[] = []
    const t0 = performance.now()
    const seqs = step.seqs
    for (const s of seqs) {
      if (!s.started) { s.started = true; s.queueMs = Date.now() - s.req.submittedAt }
    }
    stepping = true
    await runner.run(step, events)
    stepping = false
    for (const id of cancelAfterStep) cancel(runner, id, events)
    cancelAfterStep.clear()
    const ms = performance.now() - t0
    heldSteps.push({ kind: step.kind, ms, batch: seqs.length, tokens: step.kind === 'prefill' ? step.tokens * seqs.length : seqs.length })
    for (const e of events) heldEvents.push(e)
    flush(events.some((e) => e.kind !== 'token' || e.first))
    // Cancel / pause / new requests get in between steps: taken from the port here, without a turn
    // of the event loop per step (a setImmediate measured ~40 µs a step of ~500 at one stream).
    for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) onMessage(runner, m.message as ToWorker)
  }
}

function cancel (runner: StepRunner, id: number, events: SeqEvent[]): void {
  const seq = byId.get(id)
  if (seq !== undefined) runner.end(seq, events, { reason: 'cancelled' })
}

function onMessage (runner: StepRunner, msg: ToWorker): void {
  if (msg.type === 'generate') {
    const seq = new Sequence(msg.id, msg.req, init.manifest.state, tokenBytes)
    if (seq.empty) {
      send([{ id: msg.id, kind: 'error', message: 'nothing to condition on: empty input on an empty state' }])
      return
    }
    byId.set(msg.id, seq)
    runner.add(seq)
    if (seq.doneAtStart) {
      const events: SeqEvent[] = []
      runner.end(seq, events, { reason: 'length' })
      send(events)
    }
  } else if (msg.type === 'shutdown') {
    shuttingDown = true
  } else {
    const seq = byId.get(msg.id)
    if (seq === undefined) return
    if (msg.type === 'cancel' && stepping) {
      cancelAfterStep.add(msg.id)
    } else if (msg.type === 'cancel') {
      const events: SeqEvent[] = []
      cancel(runner, msg.id, events)
      send(events)
    } else {
      seq.paused = msg.type === 'pause'
    }
  }
  wake?.()
}

try {
  const session = await createSession(init.modelPath, init.runtime)
  const decodePath = decodeGraphPath(init.modelPath)
  const graphs = new StepGraphs(session, decodePath === null ? null : await createSession(decodePath, init.runtime), init.manifest)
  const runner = new StepRunner(graphs, init.manifest, init.runtime)
  port.on('message', (msg: ToWorker) => { onMessage(runner, msg) })
  const binding = bindingInUse(init.runtime.executionProvider)
  port.postMessage({ type: 'ready', inputs: [...session.inputNames], outputs: [...session.outputNames], binding: `${binding.binding} (${binding.reason})` } satisfies FromWorker)
  await loop(runner)
  flush(true)
  await graphs.release()
  // Nothing keeps the thread alive once the port closes: it ends on its own, after the release.
  port.close()
} catch (err) {
  port.postMessage({ type: 'init-error', message: (err as Error).message } satisfies FromWorker)
}
