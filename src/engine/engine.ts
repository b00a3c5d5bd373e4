// The main thread's side of a model's engine: a Backend (src/generation/backend.ts) implemented by
// a worker thread running ONNX Runtime.
import { EventEmitter } from 'node:events'
import { Worker } from 'node:worker_threads'
import type { Config } from '../config.ts'
import { UnavailableError } from '../errors.ts'
import type { Manifest } from '../models/manifest.ts'
import type { TextTokenizer } from '../tokenizer/tokenizer.ts'
import type { Backend, GenerateRequest, GenerationHandle, GenerationSink, StartBackend, StepStats } from '../generation/backend.ts'
import type { FromWorker, RuntimeOptions, SeqEvent, ToWorker, WireRequest } from './protocol.ts'

export interface EngineOptions {
  name: string
  modelPath: string
  manifest: Manifest
  tokenizer: TextTokenizer
  runtime: RuntimeOptions
}

function packTokenBytes (tokenizer: TextTokenizer): { bytes: Uint8Array, offsets: Uint32Array } {
  const offsets = new Uint32Array(tokenizer.vocabSize + 1)
  const parts: Uint8Array[] = []
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    const b = tokenizer.tokenBytes(id)
    parts.push(b)
    offsets[id + 1] = offsets[id] + b.length
  }
  const bytes = new Uint8Array(offsets[tokenizer.vocabSize])
  parts.forEach((p, id) => bytes.set(p, offsets[id]))
  return { bytes, offsets }
}

export class OrtEngine extends EventEmitter implements Backend {
  readonly name: string
  runtimeNote?: string
  private readonly worker: Worker
  private readonly sinks = new Map<number, GenerationSink>()
  private nextId = 1
  private closed = false

  private constructor (options: EngineOptions, worker: Worker) {
    super()
    this.name = options.name
    this.worker = worker
    worker.on('message', (msg: FromWorker) => { this.onMessage(msg) })
    worker.on('error', (err) => { this.failAll(err) })
    worker.on('exit', (code) => {
      const unexpected = !this.closed
      this.closed = true
      this.failAll(new Error(`engine for ${this.name} stopped`))
      if (unexpected) this.emit('exit', code)
    })
  }

  static async start (options: EngineOptions): Promise<OrtEngine> {
    const { bytes, offsets } = packTokenBytes(options.tokenizer)
    const worker = new Worker(new URL('./worker-entry.mjs', import.meta.url), {
      workerData: { modelPath: options.modelPath, manifest: options.manifest, tokenBytes: bytes, tokenOffsets: offsets, runtime: options.runtime }
    })
    const binding = await new Promise<string>((resolve, reject) => {
      const onMessage = (msg: FromWorker): void => {
        if (msg.type === 'ready') { cleanup(); resolve(msg.binding) }
        if (msg.type === 'init-error') { cleanup(); void worker.terminate(); reject(new Error(msg.message)) }
      }
      const onError = (err: Error): void => { cleanup(); reject(err) }
      const cleanup = (): void => { worker.off('message', onMessage); worker.off('error', onError) }
      worker.on('message', onMessage)
      worker.on('error', onError)
    })
    const engine = new OrtEngine(options, worker)
    engine.runtimeNote = `ONNX Runtime binding: ${binding}`
    return engine
  }

  get inFlight (): number { return this.sinks.size }

  submit (req: GenerateRequest, sink: GenerationSink): GenerationHandle {
    if (this.closed) throw new UnavailableError(`engine for ${this.name} is closed`)
    const id = this.nextId++
    this.sinks.set(id, sink)
    const wire: WireRequest = { ...req, submittedAt: Date.now() }
    const transfer = req.state?.map((s) => s.buffer as ArrayBuffer) ?? []
    this.send({ type: 'generate', id, req: wire }, transfer)
    return {
      cancel: () => { if (this.sinks.has(id)) this.send({ type: 'cancel', id }) },
      pause: () => { if (this.sinks.has(id)) this.send({ type: 'pause', id }) },
      resume: () => { if (this.sinks.has(id)) this.send({ type: 'resume', id }) }
    }
  }

  onStep (listener: (stats: StepStats) => void): void { this.on('step', listener) }
  onExit (listener: (code: number) => void): void { this.once('exit', listener) }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (const id of this.sinks.keys()) this.send({ type: 'cancel', id })
    await this.drained(5000)
    // The worker releases its ONNX Runtime session and ends by itself; terminating it while the
    // release runs aborts the whole process from native code ("terminate called after throwing an
    // instance of Napi::Error", seen once in CI), so terminate() is only the fallback.
    const exited = new Promise<void>((resolve) => { this.worker.once('exit', () => { resolve() }) })
    this.send({ type: 'shutdown' })
    const timer = setTimeout(() => { void this.worker.terminate() }, 5000)
    await exited
    clearTimeout(timer)
  }

  async drained (ms: number): Promise<void> {
    if (this.sinks.size === 0) return
    await new Promise<void>((resolve) => {
      const done = (): void => { clearTimeout(timer); this.off('drained', done); resolve() }
      const timer = setTimeout(done, ms)
      this.on('drained', done)
    })
  }

  private send (msg: ToWorker, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(msg, transfer)
  }

  private onMessage (msg: FromWorker): void {
    if (msg.type === 'steps') {
      for (const s of msg.steps) this.emit('step', s satisfies StepStats)
      this.dispatch(msg.events)
    }
  }

  private dispatch (events: SeqEvent[]): void {
    this.deliver(events)
    if (this.sinks.size === 0) this.emit('drained')
  }

  private deliver (events: SeqEvent[]): void {
    for (const e of events) {
      const sink = this.sinks.get(e.id)
      if (sink === undefined) continue
      try {
        if (e.kind === 'token') {
          sink.token(e.token, { first: e.first, queueMs: e.queueMs })
        } else if (e.kind === 'end') {
          this.sinks.delete(e.id)
          sink.end(e.result)
        } else {
          this.sinks.delete(e.id)
          sink.error(new Error(e.message))
        }
      } catch (err) {
        this.emit('sink-error', err)
      }
    }
  }

  private failAll (err: Error): void {
    for (const [id, sink] of this.sinks) {
      this.sinks.delete(id)
      sink.error(err)
    }
    this.emit('drained')
  }
}

/** Starts each model's engine with the server's runtime settings. */
export function ortBackends (config: Config): StartBackend {
  return async (m) => await OrtEngine.start({
    name: m.name,
    modelPath: m.modelPath,
    manifest: m.manifest,
    tokenizer: m.tokenizer,
    runtime: { executionProvider: config.executionProvider, cudaDevice: config.cudaDevice, intraOpThreads: m.threads, intraOpSpinning: config.intraOpSpinning, maxBatch: config.maxBatch, prefillChunk: config.prefillChunk, streamIntervalMs: config.streamIntervalMs }
  })
}
