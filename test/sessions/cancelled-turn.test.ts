// A turn cancelled before it produced a token never happened: the session keeps its previous state
// (not a prompt fed halfway), and continues exactly as if the turn had not been tried.
import http from 'node:http'
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { metricValue, postJson, startServer } from '../helpers/server.ts'

// One prompt token per step: a long prompt is still being fed when the client hangs up.
const srv = await startServer({ modelsDir: tinyModelsDir(), env: { T2R_PREFILL_CHUNK: '1' } })
t.teardown(srv.close)

t.test('a client that hangs up during its turn\'s prefill leaves the session as it was', async (t) => {
  const s = await (await postJson(`${srv.url}/v1/sessions`, { prompt: 'The Union' })).json()
  const before = await (await fetch(`${srv.url}/v1/sessions/${s.id}`)).json()
  await new Promise<void>((resolve) => {
    const req = http.request(`${srv.url}/v1/sessions/${s.id}/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } })
    req.on('error', () => { resolve() })
    req.end(JSON.stringify({ prompt: Array.from({ length: 3000 }, (_, i) => 100 + (i % 500)), max_tokens: 5 }))
    void (async () => {
      while (await metricValue(srv.url, 't2r_active_sequences', 'model="tiny-t2r"') !== 1) await new Promise((resolve) => setImmediate(resolve))
      req.destroy()
      resolve()
    })()
  })
  let after = await (await fetch(`${srv.url}/v1/sessions/${s.id}`)).json()
  while (after.busy === true) after = await (await fetch(`${srv.url}/v1/sessions/${s.id}`)).json()
  t.equal(after.tokens_consumed, before.tokens_consumed, 'no token of the cancelled prompt was kept')
  t.equal(after.pending_tokens, before.pending_tokens)
  const continued = await (await postJson(`${srv.url}/v1/sessions/${s.id}/completions`, { max_tokens: 8, temperature: 0 })).json()
  const whole = await (await postJson(`${srv.url}/v1/completions`, { prompt: 'The Union', max_tokens: 8, temperature: 0 })).json()
  t.equal(continued.choices[0].text, whole.choices[0].text, 'the session continues as if the turn had not been tried')
})
