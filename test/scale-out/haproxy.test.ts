// The shipped HAProxy configuration (docker/haproxy/haproxy.cfg), run by the real HAProxy in front
// of two real server processes: requests reach both replicas, a streamed generation passes through
// whole, and when one replica dies the other answers every request.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ROOT, tinyModelsDir } from '../helpers/fixtures.ts'
import { freePort, metricValue, postJson, readSse, spawnServer } from '../helpers/server.ts'

const HAPROXY = '/usr/sbin/haproxy'
const CONFIG = join(ROOT, 'docker', 'haproxy', 'haproxy.cfg')

t.test('HAProxy with the shipped config balances two replicas and survives one', { skip: existsSync(HAPROXY) ? false : `${HAPROXY} is missing: run scripts/setup.sh` }, async (t) => {
  const env = { MODELS_DIR: tinyModelsDir(), T2R_DEFAULT_MODEL: 'tiny-t2r', T2R_CONVERSIONS: 'off' }
  const [a, b] = await Promise.all([spawnServer(env), spawnServer(env)])
  let bAlive = true
  t.teardown(async () => { await Promise.all([a.kill('SIGKILL'), bAlive ? b.kill('SIGKILL') : null]) })

  const port = await freePort()
  const lb = spawn(HAPROXY, ['-db', '-f', CONFIG], {
    env: { ...process.env, T2R_LB_BIND: `127.0.0.1:${port}`, T2R_REPLICA_1: a.url.replace('http://', ''), T2R_REPLICA_2: b.url.replace('http://', '') },
    stdio: ['ignore', 'ignore', 'inherit']
  })
  const lbExited = new Promise((resolve) => lb.once('exit', resolve))
  t.teardown(async () => { lb.kill('SIGTERM'); await lbExited })
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; i < 100; i++) {
    try { if ((await fetch(`${url}/ready`)).status === 200) break } catch { /* not listening yet */ }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }

  const models = 'route="/v1/models",method="GET",status="200"'
  const statuses: number[] = []
  for (let i = 0; i < 10; i++) statuses.push((await fetch(`${url}/v1/models`)).status)
  t.same(statuses, Array(10).fill(200), 'ten requests through HAProxy answered 200')
  const onA = await metricValue(a.url, 't2r_http_requests_total', models)
  const onB = await metricValue(b.url, 't2r_http_requests_total', models)
  t.ok(onA > 0 && onB > 0, `both replicas served some (${onA} and ${onB})`)
  t.equal(onA + onB, 10, 'and between them all ten')

  const stream = await postJson(`${url}/v1/completions`, { prompt: 'The', max_tokens: 5, ignore_eos: true, stream: true, stream_options: { include_usage: true } })
  t.equal(stream.status, 200)
  t.match(stream.headers.get('content-type') ?? '', /^text\/event-stream/, 'an SSE stream passes through')
  const events = await readSse(stream)
  t.equal(events.at(-2)?.data.usage?.completion_tokens, 5, 'with its five tokens')
  t.equal(events.at(-1)?.data, '[DONE]', 'to its end')

  await b.kill('SIGKILL')
  bAlive = false
  const after: number[] = []
  for (let i = 0; i < 6; i++) after.push((await fetch(`${url}/v1/models`)).status)
  t.same(after, Array(6).fill(200), 'with one replica dead, every request is answered by the other')
})
