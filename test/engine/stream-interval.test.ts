// T2R_STREAM_INTERVAL_MS: a model's worker hands token events to the HTTP side at most that often
// (design §10). Held or not, a stream gets every token, in order, the same greedy text, and its end;
// only how tokens are grouped in time changes. Several streams at once end the same way too.
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, startServer } from '../helpers/server.ts'
import { sseEvents } from '../helpers/sse.ts'

interface Streamed { tokens: number[], text: string, frames: number }

async function stream (url: string, prompt: string, n: number): Promise<Streamed> {
  const res = await postJson(`${url}/generate_stream`, { inputs: prompt, parameters: { model: 'tiny-t2r', max_new_tokens: n, ignore_eos: true } })
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`)
  const out: Streamed = { tokens: [], text: '', frames: 0 }
  for await (const e of sseEvents(res)) {
    const d = e.data as { token: { id: number }, generated_text: string | null }
    out.frames++
    out.tokens.push(d.token.id)
    if (d.generated_text !== null) out.text = d.generated_text
  }
  return out
}

const prompts = ['The state of the Union is', 'Fellow-Citizens of the Senate and House of Representatives:', 'We have']
const results: Record<string, Streamed[]> = {}
for (const interval of ['0', '1000']) {
  const srv = await startServer({ modelsDir: tinyModelsDir(), env: { T2R_STREAM_INTERVAL_MS: interval } })
  results[interval] = await Promise.all(prompts.map(async (p, i) => await stream(srv.url, p, 20 + i * 7)))
  await srv.close()
}

t.test('every token arrives, in order, whether events are posted every step or held up to 1 s', async (t) => {
  prompts.forEach((_, i) => {
    const every = results['0'][i]
    const held = results['1000'][i]
    t.equal(every.frames, 20 + i * 7, 'one frame per token')
    t.same(held.tokens, every.tokens, `prompt ${i}: the same tokens`)
    t.equal(held.text, every.text, `prompt ${i}: the same text`)
    t.ok(every.text.length > 0)
  })
})

t.test('a negative interval is refused, naming the setting', async (t) => {
  await t.rejects(startServer({ modelsDir: tinyModelsDir(), env: { T2R_STREAM_INTERVAL_MS: '-1' } }), /stream interval ms/)
})
