// Sessions beyond the memory cap spill to the data folder and come back intact; idle ones expire.
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { metricValue, postJson, startServer } from '../helpers/server.ts'

t.test('only the most recently used sessions stay in memory; spilled ones continue exactly', async (t) => {
  const srv = await startServer({ modelsDir: tinyModelsDir(), env: { T2R_MAX_RESIDENT_SESSIONS: '2' } })
  t.teardown(srv.close)
  const prompts = ['The Union', 'Fellow citizens', 'The Congress', 'Our economy']
  const ids: string[] = []
  for (const prompt of prompts) ids.push((await (await postJson(`${srv.url}/v1/sessions`, { prompt })).json()).id)
  t.equal(await metricValue(srv.url, 't2r_sessions'), 4)
  t.equal(await metricValue(srv.url, 't2r_sessions_resident'), 2)
  const spilled = (await (await fetch(`${srv.url}/v1/sessions`)).json()).data.filter((s: { id: string }) => s.id === ids[0])
  t.equal(spilled.length, 1)
  const continued = await (await postJson(`${srv.url}/v1/sessions/${ids[0]}/completions`, { max_tokens: 10, temperature: 0 })).json()
  const whole = await (await postJson(`${srv.url}/v1/completions`, { prompt: prompts[0], max_tokens: 10, temperature: 0 })).json()
  t.equal(continued.choices[0].text, whole.choices[0].text, 'a spilled session reloads from disk intact')
  t.equal(await metricValue(srv.url, 't2r_sessions_resident'), 2)
})

t.test('an idle session expires after its TTL', async (t) => {
  const srv = await startServer({ modelsDir: tinyModelsDir(), env: { T2R_SESSION_TTL_SECONDS: '1' } })
  t.teardown(srv.close)
  const s = await (await postJson(`${srv.url}/v1/sessions`, {})).json()
  const created = Date.now()
  t.equal((await fetch(`${srv.url}/v1/sessions/${s.id}`)).status, 200)
  let status = 200
  while (status === 200 && Date.now() - created < 10_000) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    status = (await fetch(`${srv.url}/v1/sessions/${s.id}`)).status
  }
  t.equal(status, 404, 'expired')
  t.ok(Date.now() - created >= 1000, 'not before its TTL')
})
