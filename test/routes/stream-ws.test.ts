// WebSocket /v1/stream: multiplexed generations, cancel, errors as events.
import t from 'tap'
import WebSocket from 'ws'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, startServer } from '../helpers/server.ts'

const srv = await startServer({ modelsDir: tinyModelsDir() })
t.teardown(srv.close)

interface Event { type: string, id: string | null, [k: string]: any } // eslint-disable-line @typescript-eslint/no-explicit-any -- event payloads vary

async function open (): Promise<{ ws: WebSocket, events: Event[], until: (f: (e: Event[]) => boolean) => Promise<void> }> {
  const ws = new WebSocket(`${srv.url.replace('http', 'ws')}/v1/stream`)
  const events: Event[] = []
  const waiters: Array<() => void> = []
  ws.on('message', (d) => { events.push(JSON.parse(String(d))); for (const w of waiters) w() })
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  const until = async (f: (e: Event[]) => boolean): Promise<void> => {
    while (!f(events)) await new Promise<void>((resolve) => { waiters.push(resolve) })
  }
  return { ws, events, until }
}

t.test('two generations share one socket; each matches its REST twin', async (t) => {
  const { ws, events, until } = await open()
  ws.send(JSON.stringify({ type: 'generate', id: 'a', prompt: 'The Congress', max_tokens: 12, temperature: 0 }))
  ws.send(JSON.stringify({ type: 'generate', id: 'b', prompt: 'Fellow citizens', max_tokens: 7, temperature: 0 }))
  await until((e) => e.filter((x) => x.type === 'end').length === 2)
  for (const [id, prompt, n] of [['a', 'The Congress', 12], ['b', 'Fellow citizens', 7]] as const) {
    const tokens = events.filter((e) => e.type === 'token' && e.id === id)
    const end = events.find((e) => e.type === 'end' && e.id === id)!
    t.equal(tokens.length, n)
    t.same(tokens.map((e) => e.index), [...Array(n).keys()])
    t.equal(tokens.map((e) => e.text).join(''), end.text)
    const rest = await (await postJson(`${srv.url}/v1/completions`, { prompt, max_tokens: n, temperature: 0 })).json()
    t.equal(end.text, rest.choices[0].text)
  }
  ws.close()
})

t.test('cancel by id stops that generation only', async (t) => {
  const { ws, events, until } = await open()
  ws.send(JSON.stringify({ type: 'generate', id: 'long', prompt: 'The', max_tokens: 3000, ignore_eos: true }))
  ws.send(JSON.stringify({ type: 'generate', id: 'short', prompt: 'The', max_tokens: 5 }))
  await until((e) => e.some((x) => x.type === 'token' && x.id === 'long'))
  ws.send(JSON.stringify({ type: 'cancel', id: 'long' }))
  await until((e) => e.some((x) => x.type === 'end' && x.id === 'long') && e.some((x) => x.type === 'end' && x.id === 'short'))
  const end = events.find((e) => e.type === 'end' && e.id === 'long')!
  t.equal(end.finish_reason, 'cancelled')
  t.ok(end.usage.completion_tokens < 3000)
  t.equal(events.find((e) => e.type === 'end' && e.id === 'short')!.finish_reason, 'length')
  ws.close()
})

t.test('malformed messages get error events and the socket stays open', async (t) => {
  const { ws, events, until } = await open()
  ws.send('{not json')
  ws.send(JSON.stringify({ type: 'generate', id: 'x', prompt: 'a', temperature: 9 }))
  ws.send(JSON.stringify({ type: 'dance', id: 'y' }))
  ws.send(JSON.stringify({ type: 'generate', id: 'z', prompt: 'a', model: 'nope' }))
  await until((e) => e.filter((x) => x.type === 'error').length === 4)
  const errors = events.filter((e) => e.type === 'error')
  t.match(errors[0], { id: null, error: { message: /malformed/ } })
  t.match(errors[1], { id: 'x', error: { param: 'temperature', code: 422 } })
  t.match(errors[2], { id: 'y', error: { param: 'type' } })
  t.match(errors[3], { id: 'z', error: { code: 404 } })
  ws.send(JSON.stringify({ type: 'generate', id: 'ok', prompt: 'The', max_tokens: 3 }))
  await until((e) => e.some((x) => x.type === 'end' && x.id === 'ok'))
  t.equal(ws.readyState, WebSocket.OPEN)
  ws.close()
})
