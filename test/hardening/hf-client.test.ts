// Hugging Face's own clients work against the server as they do against TGI:
// @huggingface/inference's InferenceClient with the server's URL as its endpoint (it posts to
// /v1/completions with the URL as `model`), and huggingface_hub's TGI requests to POST /.
import { InferenceClient } from '@huggingface/inference'
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, readSse, startServer } from '../helpers/server.ts'

const srv = await startServer({ modelsDir: tinyModelsDir() })
t.teardown(srv.close)

t.test('@huggingface/inference textGeneration against the server URL', async (t) => {
  const client = new InferenceClient(undefined, { endpointUrl: srv.url })
  const out = await client.textGeneration({ inputs: 'The Congress', parameters: { max_new_tokens: 6, do_sample: false } })
  const direct = await (await postJson(`${srv.url}/generate`, { inputs: 'The Congress', parameters: { max_new_tokens: 6 } })).json()
  t.equal(out.generated_text, direct.generated_text, 'greedy text equals TGI /generate')
  const sampled = await client.textGeneration({ inputs: 'The', parameters: { max_new_tokens: 4, temperature: 0.7, top_p: 0.9, seed: 3 } })
  t.type(sampled.generated_text, 'string')
})

t.test('the endpoint URL or "tgi" as model means the default model; another URL is unknown', async (t) => {
  for (const model of [srv.url, `${srv.url}/`, 'tgi']) {
    const res = await postJson(`${srv.url}/v1/completions`, { model, prompt: 'The', max_tokens: 2 })
    t.equal(res.status, 200, model)
    t.equal((await res.json()).model, 'tiny-t2r')
  }
  const res = await postJson(`${srv.url}/v1/completions`, { model: 'http://elsewhere.example:1/', prompt: 'The', max_tokens: 2 })
  t.equal(res.status, 404)
})

t.test('TGI compat route POST /: a list with one result, or a stream', async (t) => {
  const res = await postJson(`${srv.url}/`, { inputs: 'The Congress', parameters: { max_new_tokens: 6 } })
  t.equal(res.status, 200)
  const direct = await (await postJson(`${srv.url}/generate`, { inputs: 'The Congress', parameters: { max_new_tokens: 6 } })).json()
  t.same(await res.json(), [direct])
  const events = await readSse(await postJson(`${srv.url}/`, { inputs: 'The Congress', parameters: { max_new_tokens: 6 }, stream: true }))
  t.equal(events.at(-1)?.data.generated_text, direct.generated_text)
})
