import t from 'tap'
import { DecodeScheduler, type Schedulable } from '../../src/engine/scheduler.ts'

const seq = (id: number, prefill: number): Schedulable => ({ id, prefillRemaining: prefill, paused: false })

t.test('a long prompt is prefilled in chunks, alternating with decode steps of the others', async (t) => {
  const s = new DecodeScheduler({ maxBatch: 8, prefillChunk: 100 })
  const running = seq(1, 0)
  const long = seq(2, 250)
  s.add(running)
  s.add(long)
  const kinds: string[] = []
  for (let i = 0; i < 6; i++) {
    const step = s.next()
    kinds.push(step.kind === 'prefill' ? `prefill:${step.tokens}` : step.kind === 'decode' ? `decode:${step.seqs.map((x) => x.id).join(',')}` : 'idle')
    if (step.kind === 'prefill') step.seq.prefillRemaining -= step.tokens
  }
  t.same(kinds, ['prefill:100', 'decode:1', 'prefill:100', 'decode:1', 'prefill:50', 'decode:1,2'])
})

t.test('decode batches hold at most maxBatch rows and every sequence advances', async (t) => {
  const s = new DecodeScheduler({ maxBatch: 3, prefillChunk: 16 })
  const seqs = [1, 2, 3, 4, 5].map((id) => seq(id, 0))
  for (const x of seqs) s.add(x)
  const seen = new Map<number, number>()
  for (let i = 0; i < 5; i++) {
    const step = s.next()
    if (step.kind !== 'decode') throw new Error('expected decode')
    t.ok(step.seqs.length <= 3)
    for (const x of step.seqs) seen.set(x.id, (seen.get(x.id) ?? 0) + 1)
  }
  t.same([...seen.keys()].sort(), [1, 2, 3, 4, 5], 'no sequence starves')
  t.ok(Math.max(...seen.values()) - Math.min(...seen.values()) <= 1, 'turns are shared evenly')
})

t.test('paused and removed sequences are not scheduled', async (t) => {
  const s = new DecodeScheduler({ maxBatch: 8, prefillChunk: 16 })
  const a = seq(1, 0)
  const b = seq(2, 0)
  s.add(a)
  s.add(b)
  b.paused = true
  const step = s.next()
  t.same(step.kind === 'decode' ? step.seqs.map((x) => x.id) : [], [1])
  s.remove(a)
  t.equal(s.next().kind, 'idle')
  b.paused = false
  t.equal(s.next().kind, 'decode')
})
