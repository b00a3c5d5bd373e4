// Starting a generation: admit it, tokenize, join a session's state, submit to the model's engine,
// and keep the metrics and the session store up to date as it runs. Every route goes through here
// with a GenerationSpec from the validation stage (validate.ts).
//
// Order matters for fairness under load: admission (a slot per model, counted before any work) comes
// before tokenization, so a full server refuses in microseconds instead of tokenizing a megabyte
// first; a client that goes away at any point (even while its prompt is tokenized) cancels.
import type { Tenant } from '../auth/tenant.ts'
import type { Config } from '../config.ts'
import { BusyError, ClientGoneError, InvalidError, NotFoundError, OverloadedError, UnavailableError, unprocessable } from '../errors.ts'
import type { Metrics } from '../metrics.ts'
import type { LoadedModel, ModelRegistry } from '../models/registry.ts'
import { owned } from '../sessions/ownership.ts'
import type { SessionStore } from '../sessions/store.ts'
import type { GenerationHandle, GenerationResult, GenerationSink, GenerationSpec } from './spec.ts'
import { prefillSpec } from './validate.ts'

export interface StartedGeneration {
  handle: GenerationHandle
  promptTokens: number
  inputIds: number[]
  seed: number
}


/**
 * The tokens a generation feeds at the start of a document (no session, or a session's first
 * turn): a text prompt gets the model's BOS when the model asks for one (a chat template writes its
 * own; token ids are taken as they are); an empty prompt starts from BOS, or EOS (the separator
 * between the documents a model without BOS was trained on).
 */
function documentStart (spec: GenerationSpec, promptIds: number[]): number[] {
  const { bosId, addBos, eosIds } = spec.model.special
  if (promptIds.length === 0) return [addBos && bosId !== null ? bosId : eosIds[0]]
  if (addBos && bosId !== null && typeof spec.prompt === 'string' && spec.chat === undefined) return [bosId, ...promptIds]
  return promptIds
}

/** Generations of one model that were submitted and have no first token yet, by submit time. */
class WaitQueue {
  private readonly since = new Set<{ at: number }>()
  /** Recent submit-to-first-token times (ms), smoothed: what a new request can expect to wait. */
  expectedMs = 0

  enter (): { at: number } { const e = { at: performance.now() }; this.since.add(e); return e }
  leave (e: { at: number }, started: boolean): void {
    if (!this.since.delete(e)) return
    if (started) this.expectedMs = 0.8 * this.expectedMs + 0.2 * (performance.now() - e.at)
  }

  get size (): number { return this.since.size }
  oldestMs (): number {
    let oldest = 0
    const now = performance.now()
    for (const e of this.since) oldest = Math.max(oldest, now - e.at)
    return oldest
  }
}

export class GenerationService {
  draining = false
  /** Admitted generations per model that are not yet submitted to the engine (tokenizing). */
  private readonly admitting = new Map<string, number>()
  private readonly queues = new Map<string, WaitQueue>()

  constructor (
    readonly registry: ModelRegistry,
    readonly sessions: SessionStore,
    private readonly metrics: Metrics,
    private readonly config: Config
  ) {}

  /** Why the server cannot serve generations now, or null when it can: /health, /ready and every route. */
  unavailability ({ requireModel = true } = {}): UnavailableError | null {
    if (this.draining) return new UnavailableError('server is shutting down')
    if (!this.registry.ready) return new UnavailableError('models are loading')
    if (requireModel && this.registry.list().length === 0) return new UnavailableError('no model could be loaded')
    return null
  }

  /** The model a request names (or the default): 503 while loading or draining, 404 when unknown. */
  resolveModel (name: string | undefined, param = 'model'): LoadedModel {
    const down = this.unavailability({ requireModel: false })
    // A model that is already loaded serves while others are still loading.
    if (down !== null && (this.draining || name === undefined || !this.registry.has(name))) throw down
    const model = name === undefined ? this.registry.defaultModel() : this.registry.get(name)
    if (model === undefined) throw new NotFoundError(name === undefined ? 'no model is loaded' : `model ${name} not found`, param)
    return model
  }

  /**
   * Admits, prepares and submits a generation. Throws (before anything is streamed) when it cannot
   * start; afterwards everything arrives through `sink`. Aborting `signal` cancels it at any point.
   */
  async start (spec: GenerationSpec, sink: GenerationSink, signal: AbortSignal): Promise<StartedGeneration> {
    const { model } = spec
    const release = this.admit(model)
    let sessionId: string | null = null
    try {
      const promptIds = await this.tokenize(spec)
      if (signal.aborted) throw new ClientGoneError('client went away before the generation started')
      let position = 0
      let state: Float32Array[] | null = null
      let pending: number[] = []
      if (spec.sessionId !== null) {
        const info = await owned(this.sessions, spec.sessionId, spec.tenant)
        if (info.model !== model.name) throw new InvalidError(`session ${spec.sessionId} belongs to model ${info.model}`, 'model')
        const current = await this.sessions.acquire(spec.sessionId)
        sessionId = spec.sessionId
        const expected = spec.chat?.sessionTokens ?? null
        if (expected !== null && current.position + current.pending.length !== expected) {
          throw new BusyError(`session ${spec.sessionId} changed while this chat turn was prepared; send it again`, 'session_id')
        }
        position = current.position
        // The worker takes ownership of what it is sent; the store keeps its own copy until the end.
        state = current.tensors?.map((t) => t.slice()) ?? null
        pending = current.pending
      }
      const inputIds = position === 0 && pending.length === 0 ? documentStart(spec, promptIds) : [...pending, ...promptIds]
      if (inputIds.length === 0) throw new InvalidError('prompt is empty and the session has nothing pending to continue from', 'prompt')
      if (signal.aborted) throw new ClientGoneError('client went away before the generation started')
      const seed = spec.seed ?? Math.floor(Math.random() * 2 ** 32)
      const tracked = this.tracked(model, sessionId, inputIds.length, sink)
      const { tokenizer, special } = model
      const handle = model.engine.submit({
        inputIds,
        position,
        state,
        params: spec.params,
        seed,
        maxNewTokens: spec.maxNewTokens,
        stop: spec.stop,
        stopTokenIds: spec.ignoreEos ? [] : [...new Set([...special.eosIds, ...(spec.chat?.endOfTurnId != null ? [spec.chat.endOfTurnId] : [])])],
        dropLeadingSpace: tokenizer.stripsLeadingSpace && position === 0 && inputIds.every((id) => tokenizer.tokenBytes(id).length === 0),
        // Only a session continues from the state a generation ends with.
        discardState: sessionId === null
      }, tracked.sink)
      // Counted only once the engine took it: a submit that throws leaves no trace in the queue.
      tracked.submitted()
      release()
      if (signal.aborted) handle.cancel()
      else signal.addEventListener('abort', () => { handle.cancel() }, { once: true })
      return { handle, promptTokens: inputIds.length, inputIds, seed }
    } catch (err) {
      release()
      if (sessionId !== null) await this.sessions.release(sessionId)
      throw err
    }
  }

  /** Resolves with the whole result: for non-streaming routes. Cancels if `signal` aborts. */
  async complete (spec: GenerationSpec, signal: AbortSignal, onToken?: GenerationSink['token']): Promise<{ result: GenerationResult, started: StartedGeneration }> {
    let done!: { resolve: (r: GenerationResult) => void, reject: (e: Error) => void }
    const finished = new Promise<GenerationResult>((resolve, reject) => { done = { resolve, reject } })
    const started = await this.start(spec, { token: onToken ?? (() => {}), end: done.resolve, error: done.reject }, signal)
    return { result: await finished, started }
  }

  /** Feeds a prompt into a session's state without generating. */
  async prefill (model: LoadedModel, sessionId: string, prompt: string, tenant: Tenant, signal: AbortSignal): Promise<void> {
    await this.complete(prefillSpec(model, sessionId, prompt, tenant), signal)
  }

  /** How long requests to `model` wait for their first token now (for /metrics). */
  queueWait (model: string): { waiting: number, oldestMs: number, expectedMs: number } {
    const q = this.queueOf(model)
    return { waiting: q.size, oldestMs: q.oldestMs(), expectedMs: q.expectedMs }
  }

  private queueOf (model: string): WaitQueue {
    let q = this.queues.get(model)
    if (q === undefined) this.queues.set(model, q = new WaitQueue())
    return q
  }

  /**
   * Takes a slot of the model's in-flight budget, or refuses with 429; returns its release. Two
   * bounds: the count of generations in flight, and the time requests queue before their first
   * token (while some are waiting, by the oldest one's wait and the recent typical wait).
   */
  private admit (model: LoadedModel): () => void {
    if (this.draining) throw new UnavailableError('server is shutting down')
    const waiting = this.admitting.get(model.name) ?? 0
    const inFlight = model.engine.inFlight + waiting
    const refuse = (reason: string, message: string, retryAfterSeconds: number): never => {
      this.metrics.refused.inc({ model: model.name, reason })
      throw new OverloadedError(message, retryAfterSeconds)
    }
    if (inFlight >= this.config.maxInFlight) refuse('in_flight', `queue is full: ${inFlight} generations in flight (limit ${this.config.maxInFlight})`, 1)
    const q = this.queueOf(model.name)
    const wait = q.size === 0 ? 0 : Math.max(q.oldestMs(), q.expectedMs)
    if (wait > this.config.maxQueueMs) {
      refuse('queue_time', `queue is too slow: requests wait ${(wait / 1000).toFixed(1)} s for a first token (limit ${this.config.maxQueueMs / 1000} s)`, Math.ceil(wait / 1000))
    }
    this.admitting.set(model.name, waiting + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      this.admitting.set(model.name, (this.admitting.get(model.name) ?? 1) - 1)
    }
  }

  private async tokenize (spec: GenerationSpec): Promise<number[]> {
    const { model } = spec
    const limit = this.config.maxInputTokens
    if (typeof spec.prompt === 'string') {
      // Every token covers at most maxTokenChars characters: longer text cannot fit, so it is
      // refused without spending the tokenizer's time on it.
      if (spec.prompt.length > limit * model.tokenizer.maxTokenChars) throw unprocessable(`prompt has more than ${limit} tokens (the limit)`, 'prompt')
    } else if (spec.prompt.some((t) => !Number.isInteger(t) || t < 0 || t >= model.manifest.vocab_size)) {
      throw unprocessable(`prompt token ids must be integers in [0, ${model.manifest.vocab_size})`, 'prompt')
    }
    const ids = typeof spec.prompt === 'string' ? await model.tokenizer.encode(spec.prompt) : spec.prompt
    if (ids.length > limit) throw unprocessable(`prompt has ${ids.length} tokens; the limit is ${limit}`, 'prompt')
    return ids
  }

  /** Wraps a sink with metrics, the wait queue and the session's write-through. */
  private tracked (model: LoadedModel, sessionId: string | null, promptTokens: number, sink: GenerationSink): { sink: GenerationSink, submitted: () => void } {
    const labels = { model: model.name }
    const { metrics, sessions } = this
    const queue = this.queueOf(model.name)
    let waiting: { at: number } | null = null
    let submitted = 0
    let last = 0
    return {
      submitted: () => {
        submitted = performance.now()
        waiting = queue.enter()
        metrics.activeSequences.inc(labels)
      },
      sink: {
        token (token, timing) {
          const now = performance.now()
          if (timing.first) {
            if (waiting !== null) queue.leave(waiting, true)
            metrics.timeToFirstToken.observe(labels, (now - submitted) / 1000)
            metrics.queueTime.observe(labels, timing.queueMs / 1000)
          } else if (token.id >= 0) {
            metrics.interTokenLatency.observe(labels, (now - last) / 1000)
          }
          last = now
          sink.token(token, timing)
        },
        end (result) {
          if (waiting !== null) queue.leave(waiting, result.tokens.length > 0)
          metrics.activeSequences.dec(labels)
          metrics.promptTokens.inc(labels, promptTokens)
          metrics.generatedTokens.inc(labels, result.tokens.length)
          if (sessionId === null) { sink.end(result); return }
          // A turn cancelled before it produced anything never happened: the session keeps its
          // previous state rather than a prompt fed halfway.
          const unchanged = result.finishReason === 'cancelled' && result.tokens.length === 0
          const state = unchanged ? undefined : { position: result.position, pending: result.pending, tensors: result.state }
          // The turn is reported only once it is on disk: a kill after the answer loses nothing.
          sessions.release(sessionId, state)
            .then(() => { sink.end(result) }, (err: Error) => { sink.error(new UnavailableError(`session ${sessionId} could not be saved: ${err.message}`)) })
        },
        error (err) {
          if (waiting !== null) queue.leave(waiting, false)
          metrics.activeSequences.dec(labels)
          if (sessionId === null) { sink.error(err); return }
          sessions.release(sessionId).finally(() => { sink.error(err) })
        }
      }
    }
  }
}
