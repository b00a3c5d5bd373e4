// What is logged: request URLs with their secrets replaced, never a key.
import { Writable } from 'node:stream'
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { startServer } from '../helpers/server.ts'
import { as, KEY_A, KEYS_ENV, wsConnect } from '../helpers/tenants.ts'

t.test('keys in query strings and headers never reach the log', async (t) => {
  let log = ''
  const logStream = new Writable({ write (chunk, _encoding, done) { log += String(chunk); done() } })
  const srv = await startServer({ modelsDir: tinyModelsDir(), env: { T2R_API_KEYS: KEYS_ENV, LOG_LEVEL: 'info' }, logStream })
  t.teardown(srv.close)
  const socket = await wsConnect(`${srv.url.replace('http', 'ws')}/v1/stream?api_key=${KEY_A}&x=1`)
  t.equal(socket.status, 101)
  socket.ws!.close()
  t.equal((await as(null, 'GET', `${srv.url}/v1/models?api_key=${KEY_A}`)).status, 401)
  t.equal((await as(null, 'GET', `${srv.url}/v1/models?token=${KEY_A}&key=${KEY_A}`)).status, 401)
  t.equal((await as(KEY_A, 'GET', `${srv.url}/v1/models`)).status, 200)
  await srv.close()
  t.match(log, '"url":"/v1/stream?api_key=[redacted]&x=1"', 'the WebSocket URL is logged, redacted')
  t.match(log, '"url":"/v1/models?api_key=[redacted]"')
  t.match(log, '"url":"/v1/models?token=[redacted]&key=[redacted]"')
  t.notOk(log.includes(KEY_A), 'the key appears nowhere in the log')
  t.notOk(log.includes(KEY_A.slice(0, 12)), 'not even in part')
})
