// Large, odd and slow bodies are refused by their headers first, without stalling anyone else;
// connections are capped; slow bodies time out.
import net from 'node:net'
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, startServer } from '../helpers/server.ts'

const modelsDir = tinyModelsDir()

t.test('a 32 MiB octet-stream body to a JSON route: 415 from its content type, health fine meanwhile', async (t) => {
  const srv = await startServer({ modelsDir })
  t.teardown(srv.close)
  const body = Buffer.alloc(32 * 1024 * 1024, 0x41)
  const refused = fetch(`${srv.url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body })
  t.equal((await fetch(`${srv.url}/health`)).status, 200)
  const res = await refused
  t.equal(res.status, 415)
  t.match(await res.json(), { error: { type: 'invalid_request_error' } })
  const json = await postJson(`${srv.url}/v1/completions`, { prompt: 'x'.repeat(5 * 1024 * 1024) })
  t.equal(json.status, 413, 'a JSON body over the limit: 413')
})

t.test('a body that never finishes arriving is cut off by the request timeout', async (t) => {
  const srv = await startServer({ modelsDir, env: { T2R_REQUEST_TIMEOUT_SECONDS: '1' } })
  t.teardown(srv.close)
  const { port } = new URL(srv.url)
  const socket = net.connect(Number(port), '127.0.0.1')
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.write('POST /generate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"inputs":')
  let reply = ''
  socket.on('data', (d) => { reply += String(d) })
  const closed = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => { resolve(false) }, 20_000)
    socket.once('close', () => { clearTimeout(timer); resolve(true) })
  })
  t.ok(closed, 'the server closed the connection')
  t.match(reply, /^HTTP\/1\.1 408/, 'with 408 Request Timeout')
})

t.test('connections beyond the cap are closed on arrival; the server serves again once they go', async (t) => {
  const srv = await startServer({ modelsDir, env: { T2R_MAX_CONNECTIONS: '4' } })
  t.teardown(srv.close)
  const { port } = new URL(srv.url)
  const open = async (): Promise<net.Socket> => await new Promise((resolve) => {
    const s = net.connect(Number(port), '127.0.0.1', () => { resolve(s) })
    s.on('error', () => {}) // a reset is how the cap answers
  })
  const idle = await Promise.all([0, 1, 2, 3].map(open))
  const extra = await open()
  const dropped = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => { resolve(false) }, 5000)
    extra.once('close', () => { clearTimeout(timer); resolve(true) })
    extra.write('GET /health HTTP/1.1\r\nhost: x\r\n\r\n')
  })
  t.ok(dropped, 'the fifth connection is closed')
  for (const s of idle) s.destroy()
  let status = 0
  for (const deadline = Date.now() + 5000; status !== 200 && Date.now() < deadline;) {
    status = await fetch(`${srv.url}/health`).then((r) => r.status, () => 0)
    if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.equal(status, 200)
})
