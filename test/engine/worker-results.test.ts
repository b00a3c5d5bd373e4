// What leaves the engine's worker at a generation's end: a sequence that never ran ends with the
// zero state, which every new sequence shares inside the worker (batch-state.ts sharedZeros). Its
// result must be a copy: the result's arrays are transferred to the main thread, and transferring
// the shared one would leave the worker's later sequences a detached, empty zero state.
import t from 'tap'
import { GREEDY } from '../../src/engine/sampler.ts'
import type { GenerateRequest, GenerationResult } from '../../src/generation/backend.ts'
import { stateElements } from '../../src/models/manifest.ts'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { startServer } from '../helpers/server.ts'

const srv = await startServer({ modelsDir: tinyModelsDir() })
t.teardown(srv.close)
const model = srv.server.services.registry.get('tiny-t2r')!

async function run (req: Partial<GenerateRequest>): Promise<{ tokens: number[], result: GenerationResult }> {
  const tokens: number[] = []
  const result = await new Promise<GenerationResult>((resolve, reject) => {
    model.engine.submit({ inputIds: [], position: 0, state: null, params: GREEDY, seed: 0, maxNewTokens: 0, stop: [], stopTokenIds: [], ...req }, {
      token (tok) { tokens.push(tok.id) }, end: resolve, error: reject
    })
  })
  return { tokens, result }
}

t.test('a sequence that never ran ends with its own zero state, and the next ones still start from zeros', async (t) => {
  const ids = await model.tokenizer.encode('Fellow-Citizens of the Senate')
  const before = await run({ inputIds: ids, maxNewTokens: 8 })
  const sizes = model.manifest.state.map((s) => stateElements(s, 0))
  for (let i = 0; i < 3; i++) {
    // One input token and nothing to generate: the token is held back as pending, nothing is fed.
    const { result } = await run({ inputIds: [ids[0]] })
    t.same(result.pending, [ids[0]])
    t.same(result.state.map((d) => d.length), sizes, `run ${i}: the whole zero state`)
    t.ok(result.state.every((d) => d.every((x) => x === 0)), `run ${i}: all zeros`)
  }
  const after = await run({ inputIds: ids, maxNewTokens: 8 })
  t.same(after.tokens, before.tokens, 'a generation after them gets the tokens it got before')
  t.same(after.result.state.map((d) => d.length), sizes)
})
