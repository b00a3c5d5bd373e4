// The shutdown drain is a bound: a stream that would outlive it is cancelled (its client sees a
// final event saying so) and the server has closed soon after the drain period.
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { metricValue, postJson, readSse, startServer } from '../helpers/server.ts'

t.test('a stream longer than the drain period ends cancelled, and close() returns', async (t) => {
  const srv = await startServer({ modelsDir: tinyModelsDir(), env: { T2R_SHUTDOWN_DRAIN_SECONDS: '1', T2R_MAX_BATCH: '1' } })
  // Two sequences sharing one row per step: each decodes at half speed, far from done in a second.
  const streams = [0, 1].map(async (i) => await readSse(await postJson(`${srv.url}/generate_stream`, { inputs: `Stream ${i}`, parameters: { max_new_tokens: 4096, ignore_eos: true } })))
  while (await metricValue(srv.url, 't2r_active_sequences', 'model="tiny-t2r"') !== 2) await new Promise((resolve) => setImmediate(resolve))
  const started = Date.now()
  await srv.close()
  const seconds = (Date.now() - started) / 1000
  t.ok(seconds < 10, `closed ${seconds.toFixed(1)} s after the signal (drain 1 s)`)
  for (const events of await Promise.all(streams)) {
    const last = events.at(-1)?.data
    t.equal(last?.details?.finish_reason, 'cancelled', 'the stream was told it was cancelled')
    t.ok(last?.details?.generated_tokens < 4096)
  }
})
