// Every path that can start a generation stops it when its client is gone, whatever the timing:
// here the client leaves while its prompt is still being tokenized, many times over.
import http from 'node:http'
import t from 'tap'
import WebSocket from 'ws'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { metricValue, startServer } from '../helpers/server.ts'

const srv = await startServer({ modelsDir: tinyModelsDir() })
t.teardown(srv.close)
const MAX = 4000
const prompt = 'The state of the Union. '.repeat(1000) // ~25 kB: tokenizing it takes a moment

async function settled (): Promise<number> {
  for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
    if (await metricValue(srv.url, 't2r_active_sequences', 'model="tiny-t2r"') === 0 && srv.server.services.registry.get('tiny-t2r')!.engine.inFlight === 0) break
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return srv.server.services.registry.get('tiny-t2r')!.engine.inFlight
}

const generated = async (): Promise<number> => await metricValue(srv.url, 't2r_generated_tokens_total', 'model="tiny-t2r"') || 0

t.test('WebSocket closed right after its generate message, 60 times', async (t) => {
  const before = await generated()
  for (let i = 0; i < 60; i++) {
    const ws = new WebSocket(`${srv.url.replace('http', 'ws')}/v1/stream`)
    await new Promise((resolve) => ws.once('open', resolve))
    ws.send(JSON.stringify({ type: 'generate', id: `g${i}`, prompt, max_tokens: MAX, ignore_eos: true }))
    if (i % 2 === 0) ws.terminate()
    else ws.close()
  }
  t.equal(await settled(), 0, 'nothing left running')
  const made = await generated() - before
  t.ok(made < MAX, `no generation ran to its end: ${made} tokens in all`)
})

t.test('HTTP clients that hang up while their prompt is tokenized, 30 times', async (t) => {
  const before = await generated()
  for (let i = 0; i < 30; i++) {
    const path = ['/generate', '/generate_stream', '/v1/completions'][i % 3]
    const body = path === '/v1/completions' ? { prompt, max_tokens: MAX, ignore_eos: true, stream: i % 2 === 0 } : { inputs: prompt, parameters: { max_new_tokens: MAX, ignore_eos: true } }
    await new Promise<void>((resolve) => {
      const req = http.request(`${srv.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' } })
      req.on('error', () => { resolve() })
      req.end(JSON.stringify(body), () => { setImmediate(() => { req.destroy(); resolve() }) })
    })
  }
  t.equal(await settled(), 0, 'nothing left running')
  t.ok(await generated() - before < MAX, 'no generation ran to its end')
})
