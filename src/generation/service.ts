// Starting a generation: tokenize, join a session's state, submit to the model's engine, and keep
// the metrics and the session store up to date as it runs. Every route goes through here.
import type { Config } from '../config.ts'
import { QueueFullError, type GenerationHandle, type GenerationResult, type GenerationSink } from '../engine/engine.ts'
import type { SamplingParams } from '../engine/sampler.ts'
import { randomSeed } from '../engine/rng.ts'
import { conflict, notFound, overloaded, unavailable, unprocessable } from '../errors.ts'
import type { Metrics } from '../metrics.ts'
import type { LoadedModel, ModelRegistry } from '../models/registry.ts'
import { SessionBusyError, SessionNotFoundError, type SessionStore } from '../sessions/store.ts'

export interface GenerationSpec {
  model: LoadedModel
  prompt: string | number[]
  sessionId: string | null
  maxNewTokens: number
  params: SamplingParams
  seed: number | null
  stop: string[]
  ignoreEos: boolean
}

export interface StartedGeneration {
  handle: GenerationHandle
  promptTokens: number
  inputIds: number[]
  seed: number
}

export class GenerationService {
  draining = false

  constructor (
    readonly registry: ModelRegistry,
    readonly sessions: SessionStore,
    private readonly metrics: Metrics,
    private readonly config: Config
  ) {}

  /** The model a request names (or the default), with 503 while loading and 404 when unknown. */
  resolveModel (name: string | undefined, param = 'model'): LoadedModel {
    if (this.draining) throw unavailable('server is shutting down')
    if (!this.registry.ready && (name === undefined || !this.registry.has(name))) throw unavailable('models are loading')
    const model = name === undefined ? this.registry.defaultModel() : this.registry.get(name)
    if (model === undefined) throw notFound(name === undefined ? 'no model is loaded' : `model ${name} not found`, param)
    return model
  }

  async start (spec: GenerationSpec, sink: GenerationSink): Promise<StartedGeneration> {
    if (this.draining) throw unavailable('server is shutting down')
    const { model } = spec
    const promptIds = typeof spec.prompt === 'string' ? await model.tokenizer.encode(spec.prompt) : spec.prompt
    if (promptIds.some((t) => !Number.isInteger(t) || t < 0 || t >= model.manifest.vocab_size)) {
      throw unprocessable(`prompt token ids must be integers in [0, ${model.manifest.vocab_size})`, 'prompt')
    }
    if (promptIds.length > this.config.maxInputTokens) {
      throw unprocessable(`prompt has ${promptIds.length} tokens; the limit is ${this.config.maxInputTokens}`, 'prompt')
    }
    let position = 0
    let state: Float32Array[] | null = null
    let inputIds = promptIds
    const sessionId = spec.sessionId
    if (sessionId !== null) {
      let current
      try {
        const info = this.sessions.info(sessionId)
        if (info.model !== model.name) throw unprocessable(`session ${sessionId} belongs to model ${info.model}`, 'model')
        current = this.sessions.acquire(sessionId)
      } catch (err) {
        if (err instanceof SessionNotFoundError) throw notFound(err.message, 'session_id')
        if (err instanceof SessionBusyError) throw conflict(err.message, 'session_id')
        throw err
      }
      position = current.position
      // The worker takes ownership of what it is sent; the store keeps its own copy until the end.
      state = current.tensors?.map((t) => t.slice()) ?? null
      inputIds = [...current.pending, ...promptIds]
    }
    if (inputIds.length === 0 && position === 0) inputIds = [model.manifest.eos_token_id] // document start
    if (inputIds.length === 0) {
      if (sessionId !== null) this.sessions.release(sessionId)
      throw unprocessable('prompt is empty and the session has nothing pending to continue from', 'prompt')
    }
    const seed = spec.seed ?? randomSeed()
    const labels = { model: model.name }
    const submitted = performance.now()
    let last = 0
    const metrics = this.metrics
    const sessions = this.sessions
    metrics.activeSequences.inc(labels)
    const tracked: GenerationSink = {
      token (token, timing) {
        const now = performance.now()
        if (timing.first) {
          metrics.timeToFirstToken.observe(labels, (now - submitted) / 1000)
          metrics.queueTime.observe(labels, timing.queueMs / 1000)
        } else if (token.id >= 0) {
          metrics.interTokenLatency.observe(labels, (now - last) / 1000)
        }
        last = now
        sink.token(token, timing)
      },
      end (result: GenerationResult) {
        metrics.activeSequences.dec(labels)
        metrics.promptTokens.inc(labels, inputIds.length)
        metrics.generatedTokens.inc(labels, result.tokens.length)
        if (sessionId !== null) sessions.release(sessionId, { position: result.position, pending: result.pending, tensors: result.state })
        sink.end(result)
      },
      error (err) {
        metrics.activeSequences.dec(labels)
        if (sessionId !== null) sessions.release(sessionId)
        sink.error(err)
      }
    }
    try {
      const handle = model.engine.submit({
        inputIds,
        position,
        state,
        params: spec.params,
        seed,
        maxNewTokens: spec.maxNewTokens,
        stop: spec.stop,
        stopTokenIds: spec.ignoreEos ? [] : [model.manifest.eos_token_id]
      }, tracked)
      return { handle, promptTokens: inputIds.length, inputIds, seed }
    } catch (err) {
      metrics.activeSequences.dec(labels)
      if (sessionId !== null) sessions.release(sessionId)
      if (err instanceof QueueFullError) throw overloaded(`queue is full: ${err.message}`)
      throw err
    }
  }

  /** Resolves with the whole result: for non-streaming routes. Cancels if `signal` aborts. */
  async complete (spec: GenerationSpec, signal: AbortSignal, onToken?: GenerationSink['token']): Promise<{ result: GenerationResult, started: StartedGeneration }> {
    let started: StartedGeneration | undefined
    const result = await new Promise<GenerationResult>((resolve, reject) => {
      this.start(spec, { token: onToken ?? (() => {}), end: resolve, error: reject })
        .then((s) => {
          started = s
          if (signal.aborted) s.handle.cancel()
          else signal.addEventListener('abort', () => { s.handle.cancel() }, { once: true })
        }, reject)
    })
    return { result, started: started! }
  }
}
