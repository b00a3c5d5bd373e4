import t from 'tap'
import { StreamingDetokenizer } from '../../src/engine/detokenizer.ts'

// A toy byte vocabulary: token i is the bytes listed here.
const vocab: Uint8Array[] = [
  Buffer.from('Hello'), Buffer.from(' wor'), Buffer.from('ld'),
  Buffer.from('é').subarray(0, 1), Buffer.from('é').subarray(1), // é split across two tokens
  Buffer.from('🇺🇸').subarray(0, 3), Buffer.from('🇺🇸').subarray(3), // a flag split mid-character
  Buffer.from('END'), Buffer.from('E'), Buffer.from('ND'), Buffer.from('!')
]
const bytes = (id: number): Uint8Array => vocab[id]

function run (ids: number[], stops: string[] = []): { pieces: string[], stop?: string, finished: string } {
  const d = new StreamingDetokenizer(bytes, stops)
  const pieces: string[] = []
  let stop: string | undefined
  for (const id of ids) {
    const r = d.push(id)
    pieces.push(r.text)
    if (r.stop !== undefined) { stop = r.stop; break }
  }
  if (stop === undefined) pieces.push(d.finish())
  return { pieces, stop, finished: d.generated }
}

t.test('characters split across tokens are emitted once, whole', async (t) => {
  const r = run([0, 3, 4, 5, 6])
  t.same(r.pieces, ['Hello', '', 'é', '', '🇺🇸', ''])
  t.equal(r.pieces.join(''), 'Helloé🇺🇸')
  t.notOk(r.pieces.join('').includes('\uFFFD'))
})

t.test('an incomplete character at the end becomes one replacement character', async (t) => {
  const r = run([0, 3])
  t.equal(r.pieces.join(''), 'Hello\uFFFD')
})

t.test('a stop sequence spanning tokens ends the text before it and is never streamed', async (t) => {
  const r = run([0, 8, 9, 10], ['END'])
  t.equal(r.stop, 'END')
  t.equal(r.pieces.join(''), 'Hello')
  t.equal(r.finished, 'Hello')
})

t.test('held-back text that does not become a stop sequence is released', async (t) => {
  const r = run([0, 8, 10], ['END'])
  t.equal(r.stop, undefined)
  t.same(r.pieces, ['Hello', '', 'E!', ''])
  const end = run([0, 8], ['END'])
  t.equal(end.pieces.join(''), 'HelloE', 'released at the end of the stream')
})

t.test('the earliest of several stop sequences wins', async (t) => {
  const r = run([0, 1, 2], ['ld', 'wor'])
  t.equal(r.stop, 'wor')
  t.equal(r.finished, 'Hello ')
})
