// One request can never hurt another: extreme sampling values decode (they are admitted by the
// schema, so they must be numerically safe), and the streams sharing its batch finish untouched.
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { metricValue, postJson, readSse, startServer } from '../helpers/server.ts'

const srv = await startServer({ modelsDir: tinyModelsDir() })
t.teardown(srv.close)
const N = 300

t.test('extreme values next to four neighbours decoding in the same batch', async (t) => {
  const neighbours = Array.from({ length: 4 }, async (_, i) => await readSse(await postJson(`${srv.url}/generate_stream`, { inputs: `Neighbour ${i}`, parameters: { max_new_tokens: N, ignore_eos: true } })))
  while (await metricValue(srv.url, 't2r_active_sequences', 'model="tiny-t2r"') < 4) await new Promise((resolve) => setImmediate(resolve))
  const extreme = [
    { temperature: 1e-38 }, { temperature: 5e-324 }, { temperature: 100 },
    { repetition_penalty: 1e-38 }, { repetition_penalty: 10 }, { frequency_penalty: 2, presence_penalty: -2 },
    { top_p: 1e-300 }, { top_p: 0.9999999999999999 }, { typical_p: 1e-300 }, { top_k: 8192, temperature: 1e-30 }
  ]
  for (const parameters of extreme) {
    const res = await postJson(`${srv.url}/generate`, { inputs: 'a', parameters: { ...parameters, max_new_tokens: 8 } })
    t.equal(res.status, 200, `${JSON.stringify(parameters)}: decodes`)
    t.type((await res.json()).generated_text, 'string')
  }
  const streamed = await readSse(await postJson(`${srv.url}/generate_stream`, { inputs: 'a', parameters: { repetition_penalty: 1e-38, max_new_tokens: 8 } }))
  t.equal(streamed.at(-1)?.data.details.finish_reason, 'length', 'a stream with a tiny penalty ends normally')
  for (const events of await Promise.all(neighbours)) {
    t.notOk(events.some((e) => e.event === 'error'), 'no neighbour got an error')
    t.equal(events.at(-1)?.data.details.generated_tokens, N, 'every neighbour got all its tokens')
  }
})
