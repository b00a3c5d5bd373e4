// The runner on the real tiny models (ONNX Runtime, no HTTP, so the timing of arrivals is fixed):
// prompts that arrive together are prefilled in one run, sequences decode in slots while others
// join and leave, and every sequence gets the tokens, log-probabilities and final state it gets
// alone.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { createSession, decodeGraphPath } from '../../src/engine/ort-session.ts'
import type { SeqEvent } from '../../src/engine/protocol.ts'
import { StepRunner } from '../../src/engine/runner.ts'
import { GREEDY } from '../../src/engine/sampler.ts'
import { Sequence } from '../../src/engine/sequence.ts'
import { StepGraphs } from '../../src/engine/step-graphs.ts'
import { parseManifest } from '../../src/models/manifest.ts'
import { loadTokenizer } from '../../src/tokenizer/tokenizer.ts'
import { tinyModelsDir } from '../helpers/fixtures.ts'

const TEXTS = [
  'Fellow-Citizens of the Senate and House of Representatives:',
  'In the course of the last year, the Congress and the people',
  'The state of the Union is strong, and the',
  'We have come to the end of a long war, and we'
]

interface Outcome { tokens: number[], logprobs: number[], state: Float32Array[], position: number }

// tiny-t2r twice: decoding through decode.onnx (slots read in place), and as a folder without one
// (the step graph on a stacked copy of the slots). tiny-base (softmax): KV caches padded to one
// length in the batch (its decode.onnx masks the padding), and without decode.onnx one at a time.
// `ragged`: prompts of different lengths, two of them arriving after the others have decoded a
// few tokens, so rows of different cache lengths share decode steps and the batch changes.
for (const [name, useDecodeGraph, ragged] of [['tiny-t2r', true, false], ['tiny-t2r', false, false], ['tiny-base', true, false],
  ['tiny-t2r', true, true], ['tiny-base', true, true], ['tiny-base', false, true]] as const) {
  t.test(`${name}${useDecodeGraph ? '' : ', without decode.onnx'}${ragged ? ', prompts of different lengths arriving apart' : ''}`, async (t) => {
    const dir = join(tinyModelsDir(), name)
    const manifest = parseManifest(JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')), dir)
    const tokenizer = loadTokenizer(join(dir, 'tokenizer.json'), { vocabSize: manifest.vocab_size })
    const runtime = { executionProvider: 'cpu' as const, cudaDevice: 0, intraOpThreads: 1 }
    const decodePath = decodeGraphPath(join(dir, 'model.onnx'))
    const graphs = new StepGraphs(await createSession(join(dir, 'model.onnx'), runtime), decodePath === null || !useDecodeGraph ? null : await createSession(decodePath, runtime), manifest)
    t.teardown(async () => { await graphs.release() })
    // Equal lengths (8 tokens each), so they can share prefill steps; different max_new_tokens, so
    // the decode batch loses members one by one.
    const lengths = ragged ? [5, 8, 11, 7] : [8, 8, 8, 8]
    const prompts = (await Promise.all(TEXTS.map(async (x) => await tokenizer.encode(x)))).map((ids, i) => ids.slice(0, lengths[i]))
    const maxNew = [9, 17, 5, 12]
    // The step before which each request is added.
    const arrival = ragged ? [0, 0, 4, 6] : [0, 0, 0, 0]

    /** Runs `which` requests, each added before its arrival step; -> each one's outcome and the steps run. */
    async function run (which: number[], discard: number[] = []): Promise<{ outcomes: Map<number, Outcome>, steps: string[] }> {
      const runner = new StepRunner(graphs, manifest, { maxBatch: 8, prefillChunk: 64 })
      const outcomes = new Map<number, Outcome>()
      const add = (i: number): void => {
        runner.add(new Sequence(i, { inputIds: prompts[i], position: 0, state: null, params: GREEDY, seed: 0, maxNewTokens: maxNew[i], stop: [], stopTokenIds: [], submittedAt: 0, discardState: discard.includes(i) }, manifest.state, (id) => tokenizer.tokenBytes(id)))
        outcomes.set(i, { tokens: [], logprobs: [], state: [], position: 0 })
      }
      const steps: string[] = []
      for (;;) {
        // Alone, a request starts at once.
        for (const i of which) if (!outcomes.has(i) && (which.length === 1 || arrival[i] <= steps.length)) add(i)
        const step = runner.scheduler.next()
        if (step.kind === 'idle') break
        steps.push(`${step.kind} ${step.seqs.length}`)
        const events: SeqEvent[] = []
        await runner.run(step, events)
        for (const e of events) {
          const o = outcomes.get(e.id)!
          if (e.kind === 'token') { o.tokens.push(e.token.id); o.logprobs.push(e.token.logprob) }
          if (e.kind === 'end') { o.state = e.result.state; o.position = e.result.position }
          if (e.kind === 'error') throw new Error(e.message)
        }
      }
      return { outcomes, steps }
    }

    const alone = new Map<number, Outcome>()
    for (let i = 0; i < prompts.length; i++) alone.set(i, (await run([i])).outcomes.get(i)!)
    const together = await run([0, 1, 2, 3])
    if (!ragged) t.equal(together.steps[0], `prefill ${prompts.length}`, 'one prefill run for the four prompts')
    // A softmax model without decode.onnx decodes one row a step; every other case in one batch.
    const batched = name === 'tiny-t2r' || useDecodeGraph
    t.equal(together.steps.includes('decode 4'), batched, `decoding in one batch: ${batched} (${together.steps.join(', ')})`)
    if (!batched) t.notOk(together.steps.some((x) => /^decode [2-9]/.test(x)), 'never more than one row a decode step')
    t.ok(new Set([...alone.values()].map((o) => o.tokens.join())).size > 1, 'the prompts lead to different tokens')
    for (let i = 0; i < prompts.length; i++) {
      const a = alone.get(i)!
      const b = together.outcomes.get(i)!
      t.same(b.tokens, a.tokens, `prompt ${i}: the tokens it gets alone`)
      t.equal(b.tokens.length, maxNew[i])
      t.equal(b.position, a.position)
      const lp = Math.max(...a.logprobs.map((x, k) => Math.abs(x - b.logprobs[k])))
      t.ok(lp < 1e-4, `prompt ${i}: log-probabilities within 1e-4 of alone (max diff ${lp.toExponential(1)})`)
      const st = Math.max(...a.state.map((d, s) => Math.max(...d.map((x, k) => Math.abs(x - b.state[s][k])))))
      t.ok(st < 1e-4, `prompt ${i}: final state within 1e-4 of alone (max diff ${st.toExponential(1)})`)
    }
    // Requests that discard their state (no session): they end with none, the same tokens, and
    // the others, whose rows move into their slots as they leave, lose nothing.
    const discarding = await run([0, 1, 2, 3], [0, 2])
    for (let i = 0; i < prompts.length; i++) {
      const a = alone.get(i)!
      const b = discarding.outcomes.get(i)!
      t.same(b.tokens, a.tokens, `discarding 0 and 2: prompt ${i} gets its tokens`)
      if (i === 0 || i === 2) { t.same(b.state, [], `prompt ${i}: no state`); continue }
      const st = Math.max(...a.state.map((d, s) => Math.max(...d.map((x, k) => Math.abs(x - b.state[s][k])))))
      t.ok(st < 1e-4, `discarding 0 and 2: prompt ${i}'s final state within 1e-4 of alone (max diff ${st.toExponential(1)})`)
    }
  })
}
