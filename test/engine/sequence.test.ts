// A sequence's pending-token invariant, without a model: feed logits by hand and read the result.
// position = tokens folded into the state; pending = the transcript's last token when it is not.
import t from 'tap'
import { GREEDY } from '../../src/engine/sampler.ts'
import type { SeqEvent, WireResult } from '../../src/engine/protocol.ts'
import { Sequence } from '../../src/engine/sequence.ts'
import type { StateTensorSpec } from '../../src/models/manifest.ts'

const VOCAB = 8
const specs: StateTensorSpec[] = [{ name: 's', output: 's_out', shape: [1, 'batch', 2], dtype: 'float32', growing_axis: null }]
const bytes = (id: number): Uint8Array => new TextEncoder().encode(String.fromCharCode(97 + id)) // id 0 = "a"
const peaked = (id: number): Float32Array => Float32Array.from({ length: VOCAB }, (_, i) => (i === id ? 10 : 0))
const request = (inputIds: number[], maxNewTokens: number, position = 0) =>
  ({ inputIds, position, state: null, params: GREEDY, seed: 0, maxNewTokens, stop: [], stopTokenIds: [7], submittedAt: 0 })

function endOf (events: SeqEvent[]): WireResult {
  const e = events.find((x) => x.kind === 'end')
  if (e?.kind !== 'end') throw new Error('no end event')
  return e.result
}

t.test('generating: every input token is fed, the last sampled one stays pending', async (t) => {
  const seq = new Sequence(1, request([1, 2, 3], 3, 10), specs, bytes)
  t.same(seq.state?.map((s) => s.length), [2], 'a zero state of the spec\'s size')
  const { ids, last } = seq.takePrefill(8)
  t.same(ids, [1, 2, 3])
  t.ok(last)
  seq.advance(ids.length)
  const events: SeqEvent[] = []
  t.equal(seq.sample(peaked(4), undefined, events), null)
  t.equal(seq.decodeInput(), 4, 'the sampled token is what the next step feeds')
  seq.advance(1)
  t.equal(seq.sample(peaked(5), undefined, events), null)
  seq.advance(1)
  t.same(seq.sample(peaked(6), undefined, events), { reason: 'length', stop: null })
  seq.finish('length', events)
  const r = endOf(events)
  t.equal(r.position, 10 + 3 + 2, 'inputs and all but the last sampled token are in the state')
  t.same(r.pending, [6])
  t.same(r.tokens, [4, 5, 6])
  t.equal(r.text, 'efg')
})

t.test('nothing to generate: the last input token is held back as pending', async (t) => {
  const seq = new Sequence(2, request([1, 2, 3], 0), specs, bytes)
  const { ids, last } = seq.takePrefill(2)
  t.same(ids, [1, 2])
  t.ok(last, 'the held-back token is not prefilled')
  seq.advance(ids.length)
  const events: SeqEvent[] = []
  t.same(seq.sample(peaked(4), undefined, events), { reason: 'length', stop: null })
  seq.finish('length', events)
  t.same(endOf(events).pending, [3])
  t.equal(endOf(events).position, 2)
})

t.test('one pending token only: a continuation of it decodes without prefill', async (t) => {
  const seq = new Sequence(3, request([3], 0, 2), specs, bytes)
  t.ok(seq.doneAtStart, 'nothing to feed, nothing to generate')
  t.notOk(seq.empty, 'but a token to condition on')
  t.ok(new Sequence(4, request([], 0), specs, bytes).empty)
})

t.test('an end-of-sequence token ends with an empty special token event', async (t) => {
  const seq = new Sequence(5, request([1], 5), specs, bytes)
  seq.advance(seq.takePrefill(1).ids.length)
  const events: SeqEvent[] = []
  t.same(seq.sample(peaked(7), undefined, events), { reason: 'eos_token', stop: null })
  const tok = events[0]
  t.ok(tok.kind === 'token' && tok.token.special && tok.token.text === '')
})
