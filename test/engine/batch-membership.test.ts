// Decoding in a batch gives every sequence the tokens it gets alone: sequences join the batch as their
// prefills end (prompts of different lengths) and leave it as they finish (different max_tokens),
// so the batch's members change step after step. Greedy, on the real tiny models through HTTP;
// tiny-t2r decodes batched through decode.onnx, tiny-base (KV cache) one sequence at a time.
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { metricValue, postJson, startServer } from '../helpers/server.ts'

const srv = await startServer({ modelsDir: tinyModelsDir() })
t.teardown(srv.close)

const requests = [
  { prompt: 'The', max_tokens: 24 },
  { prompt: 'Fellow-Citizens of the Senate and House of Representatives:', max_tokens: 6 },
  { prompt: 'The state of the Union is', max_tokens: 17 },
  { prompt: 'We have', max_tokens: 11 },
  { prompt: 'In the course of the last year, the Congress and the people', max_tokens: 30 }
]

async function complete (model: string, body: object): Promise<string> {
  const res = await postJson(`${srv.url}/v1/completions`, { model, temperature: 0, ...body })
  if (res.status !== 200) throw new Error(`${model}: HTTP ${res.status} ${await res.text()}`)
  return (await res.json()).choices[0].text
}

for (const model of ['tiny-t2r', 'tiny-base']) {
  t.test(`${model}: greedy texts decoded together equal those decoded alone`, async (t) => {
    const alone: string[] = []
    for (const r of requests) alone.push(await complete(model, r))
    const batchedBefore = await metricValue(srv.url, 't2r_decode_batch_size_sum', `model="${model}"`)
    const stepsBefore = await metricValue(srv.url, 't2r_decode_batch_size_count', `model="${model}"`)
    const together = await Promise.all(requests.map(async (r) => await complete(model, r)))
    t.same(together, alone)
    t.ok(new Set(alone).size > 1, 'the prompts lead to different texts')
    if (model === 'tiny-t2r') {
      const rows = await metricValue(srv.url, 't2r_decode_batch_size_sum', `model="${model}"`) - batchedBefore
      const steps = await metricValue(srv.url, 't2r_decode_batch_size_count', `model="${model}"`) - stepsBefore
      t.ok(rows > steps, `decode steps ran several sequences at once (${rows} rows in ${steps} steps)`)
    }
  })
}
