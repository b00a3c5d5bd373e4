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
    kinds.push(step.kind === 'prefill' ? `prefill:${step.seqs.map((x) => x.id).join(',')}:${step.tokens}` : step.kind === 'decode' ? `decode:${step.seqs.map((x) => x.id).join(',')}` : 'idle')
    if (step.kind === 'prefill') for (const x of step.seqs) x.prefillRemaining -= step.tokens
  }
  t.same(kinds, ['prefill:2:100', 'decode:1', 'prefill:2:100', 'decode:1', 'prefill:2:50', 'decode:1,2'])
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

t.test('requests that arrive together are prefilled together, within one chunk of tokens per step', async (t) => {
  const s = new DecodeScheduler({ maxBatch: 8, prefillChunk: 40 })
  // Prompts of 12, 13, 12, 12, 12, 50 tokens: a step takes the rows whose next chunk is as long
  // as the oldest's, 40 tokens at most (three rows of 12).
  const seqs = [seq(1, 12), seq(2, 13), seq(3, 12), seq(4, 12), seq(5, 12), seq(6, 50)]
  for (const x of seqs) s.add(x)
  const steps: string[] = []
  for (let i = 0; i < 8; i++) {
    const step = s.next()
    if (step.kind === 'prefill') {
      steps.push(`prefill ${step.seqs.map((x) => x.id).join(',')} × ${step.tokens}`)
      for (const x of step.seqs) x.prefillRemaining -= step.tokens
    } else {
      steps.push(step.kind === 'decode' ? `decode ${step.seqs.map((x) => x.id).join(',')}` : 'idle')
    }
  }
  t.same(steps, [
    'prefill 1,3,4 × 12',
    'decode 1,3,4',
    'prefill 2 × 13',
    'decode 1,2,3,4',
    'prefill 5 × 12',
    'decode 1,2,3,4,5',
    'prefill 6 × 40',
    'decode 1,2,3,4,5'
  ])
})

t.test('a prefill step takes at most maxBatch rows, and a full chunk goes alone', async (t) => {
  const s = new DecodeScheduler({ maxBatch: 4, prefillChunk: 64 })
  for (let id = 1; id <= 10; id++) s.add(seq(id, 2))
  const step = s.next()
  t.same(step.kind === 'prefill' ? step.seqs.map((x) => x.id) : [], [1, 2, 3, 4])
  const long = new DecodeScheduler({ maxBatch: 4, prefillChunk: 64 })
  for (const x of [seq(1, 200), seq(2, 300)]) long.add(x)
  const first = long.next()
  t.same(first.kind === 'prefill' ? [first.seqs.map((x) => x.id), first.tokens] : [], [[1], 64], 'one chunk of latency per step')
})

t.test('a prefill step takes only the rows the caller allows together (a KV cache: equal past lengths)', async (t) => {
  const at = (id: number, prefill: number, position: number): Schedulable & { position: number } => ({ ...seq(id, prefill), position })
  const s = new DecodeScheduler<Schedulable & { position: number }>({ maxBatch: 8, prefillChunk: 64, prefillTogether: (a, b) => a.position === b.position })
  for (const x of [at(1, 4, 0), at(2, 4, 10), at(3, 4, 0)]) s.add(x)
  const step = s.next()
  t.same(step.kind === 'prefill' ? step.seqs.map((x) => x.id) : [], [1, 3])
})
