// One generation inside the engine worker: what it still has to feed, what it has sampled, and
// its state. It owns the pending-token invariant in one place:
//
//   position  = tokens already folded into the state
//   pending() = transcript tokens not yet fed (at most one: the last sampled token, or the last
//               input token when nothing is generated), so a session continues by feeding
//               pending + its next prompt, and turns equal one call.
//
// Pure with respect to ONNX Runtime: the runner feeds it logits, it samples and detokenizes.
import { stateElements, type StateTensorSpec } from '../models/manifest.ts'
import { sharedZeros } from './batch-state.ts'
import { StreamingDetokenizer } from './detokenizer.ts'
import type { FinishReason, SeqEvent, WireRequest, WireResult } from './protocol.ts'
import { Rng } from './rng.ts'
import { sampleToken, TokenHistory } from './sampler.ts'
import type { Schedulable } from './scheduler.ts'

export class Sequence implements Schedulable {
  prefillRemaining: number
  paused = false
  state: Float32Array[] | null
  position: number
  started = false
  queueMs = 0
  finished = false
  /** The token the next decode step feeds: the last sampled one (or the held-back last input). */
  private next: number | null = null
  private readonly feed: number[]
  private fed = 0
  private readonly generated: number[] = []
  private readonly history = new TokenHistory()
  private readonly rng: Rng
  private readonly detok: StreamingDetokenizer
  private readonly stopIds: Set<number>

  constructor (readonly id: number, readonly req: WireRequest, specs: StateTensorSpec[], tokenBytes: (id: number) => Uint8Array) {
    this.position = req.position
    this.state = req.state ?? specs.map((s) => sharedZeros(stateElements(s, req.position)))
    // Nothing to generate: the last input token is held back as pending instead of being fed.
    const holdLast = req.maxNewTokens === 0 && req.inputIds.length > 0
    this.feed = holdLast ? req.inputIds.slice(0, -1) : req.inputIds
    if (holdLast) this.next = req.inputIds[req.inputIds.length - 1]
    this.prefillRemaining = this.feed.length
    this.history.addPrompt(req.inputIds)
    this.rng = new Rng(req.seed)
    this.detok = new StreamingDetokenizer(tokenBytes, req.stop, req.dropLeadingSpace === true)
    this.stopIds = new Set(req.stopTokenIds)
  }

  /** Nothing to feed and nothing pending: there is no token to condition on. */
  get empty (): boolean { return this.feed.length === 0 && this.next === null }

  /** Done as soon as it is admitted: nothing to prefill and nothing to generate. */
  get doneAtStart (): boolean { return this.prefillRemaining === 0 && this.req.maxNewTokens === 0 }

  /** The next prefill chunk (at most `n` tokens); `last` says whether it completes the prefill. */
  takePrefill (n: number): { ids: number[], last: boolean } {
    const ids = this.feed.slice(this.fed, this.fed + n)
    this.fed += ids.length
    this.prefillRemaining -= ids.length
    return { ids, last: this.prefillRemaining === 0 }
  }

  /** The token this sequence feeds in a decode step. */
  decodeInput (): number {
    if (this.next === null) throw new Error(`sequence ${this.id} has no token to decode`)
    return this.next
  }

  /** After a run fed `count` tokens: the state now holds them. */
  advance (count: number): void {
    this.position += count
  }

  /**
   * Samples the next token from the logits row the last run produced and reports it into `events`.
   * Returns the reason the generation ends, or null if it goes on.
   */
  sample (logits: Float32Array, lse: number | undefined, events: SeqEvent[]): { reason: FinishReason, stop: string | null } | null {
    if (this.req.maxNewTokens === 0) return { reason: 'length', stop: null }
    const t = sampleToken(logits, this.req.params, this.history, this.rng, lse)
    this.history.addOutput(t.id)
    this.generated.push(t.id)
    this.next = t.id
    const first = this.generated.length === 1
    if (this.stopIds.has(t.id)) {
      events.push({ id: this.id, kind: 'token', token: { id: t.id, text: '', logprob: t.logprob, special: true, top: t.top }, first, queueMs: this.queueMs })
      return { reason: 'eos_token', stop: null }
    }
    const pushed = this.detok.push(t.id)
    events.push({ id: this.id, kind: 'token', token: { id: t.id, text: pushed.text, logprob: t.logprob, special: false, top: t.top }, first, queueMs: this.queueMs })
    if (pushed.stop !== undefined) return { reason: 'stop', stop: pushed.stop }
    if (this.generated.length >= this.req.maxNewTokens) return { reason: 'length', stop: null }
    return null
  }

  /** The end event. Text released only at the end joins the last token's event. */
  finish (reason: FinishReason, events: SeqEvent[]): void {
    this.finished = true
    const tail = reason === 'stop' ? '' : this.detok.finish()
    const result: WireResult = {
      finishReason: reason,
      tokens: this.generated,
      text: this.detok.generated,
      position: this.position,
      pending: this.next === null ? [] : [this.next],
      state: this.state!,
      queueMs: this.queueMs
    }
    const last = events.findLast((e) => e.id === this.id && e.kind === 'token')
    if (tail !== '' && last !== undefined && last.kind === 'token') last.token.text += tail
    events.push({ id: this.id, kind: 'end', result })
  }
}
