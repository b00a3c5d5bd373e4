// A bad model folder is reported and skipped; asking for CUDA where it is missing says what is.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, startServer } from '../helpers/server.ts'

t.test('broken model folders are skipped and reported; the others serve', async (t) => {
  const srv = await startServer({ modelsDir: tinyModelsDir(), copyModels: true, loadModels: false })
  t.teardown(srv.close)
  mkdirSync(join(srv.modelsDir, 'bad-json'))
  writeFileSync(join(srv.modelsDir, 'bad-json', 'model.json'), '{ nope')
  mkdirSync(join(srv.modelsDir, 'bad-schema'))
  writeFileSync(join(srv.modelsDir, 'bad-schema', 'model.json'), JSON.stringify({ name: 'bad-schema', architecture: 'lstm' }))
  await srv.server.loadModels()
  const ready = await (await fetch(`${srv.url}/ready`)).json()
  t.same(ready.models.sort(), ['tiny-base', 'tiny-t2r'])
  t.match(ready.failed['bad-json'], /model\.json/)
  t.match(ready.failed['bad-schema'], /invalid model\.json at \/\w+/)
  t.equal((await postJson(`${srv.url}/generate`, { inputs: 'The', parameters: { max_new_tokens: 2 } })).status, 200)
})

t.test('CUDA requested without its binaries or a GPU: the model fails to load with the reason, no CPU fall-back', async (t) => {
  const srv = await startServer({ modelsDir: tinyModelsDir(), env: { T2R_EXECUTION_PROVIDER: 'cuda' } })
  t.teardown(srv.close)
  const ready = await (await fetch(`${srv.url}/ready`)).json()
  t.same(ready.models, [])
  t.match(ready.failed['tiny-t2r'], /CUDA execution provider requested but .*(CUDA provider library|GPU)/)
  // This test's server loads the project's onnxruntime-node (no --conditions=t2r-cuda): the reason points to the setup step.
  t.match(ready.failed['tiny-t2r'], /has no CUDA provider library .*bash scripts\/setup-gpu\.sh/)
  t.equal((await fetch(`${srv.url}/health`)).status, 503)
})
