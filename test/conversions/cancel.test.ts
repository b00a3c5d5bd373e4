// Cancelling a running conversion: the trainer process ends, the job's working folder goes, no
// model appears, and a second cancel is a conflict.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { metricValue, postJson, startServer } from '../helpers/server.ts'

interface JobView { id: string, status: string, step: number, error: string | null }

const trainerRunning = (id: string): boolean =>
  execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').some((l) => l.includes(id) && l.includes('t2r'))

t.test('DELETE stops a running conversion and leaves nothing behind', async (t) => {
  const srv = await startServer({ modelsDir: tinyModelsDir(), copyModels: true })
  t.teardown(async () => { await srv.close() })

  const res = await postJson(`${srv.url}/v1/conversions`, {
    source_model: 'tiny-base', name: 'tiny-long', steps: 100000, transfer_steps: 0, batch_size: 2, sequence_length: 16, feature_dim: 8, eval_windows: 2
  })
  t.equal(res.status, 202)
  const { id } = await res.json() as JobView

  let job: JobView | undefined
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(100)) {
    job = await (await fetch(`${srv.url}/v1/conversions/${id}`)).json() as JobView
    if (job.status !== 'queued' && job.status !== 'running') break
    if (job.status === 'running' && job.step > 0) break
  }
  t.equal(job?.status, 'running', 'the job is running')
  t.ok((job?.step ?? 0) > 0, 'and has made progress')
  t.ok(trainerRunning(id), 'its trainer process is alive')
  t.ok(existsSync(join(srv.dataDir, 'conversions', id)), 'its working folder exists')

  // A second job waits behind the running one; cancelling it while queued leaves nothing either.
  const queued = await postJson(`${srv.url}/v1/conversions`, {
    source_model: 'tiny-base', name: 'tiny-queued', steps: 4, transfer_steps: 0, batch_size: 2, sequence_length: 16, feature_dim: 8, eval_windows: 2
  })
  t.equal(queued.status, 202)
  const second = await queued.json() as JobView
  t.equal(second.status, 'queued', 'a second job queues behind the running one')
  const delQueued = await fetch(`${srv.url}/v1/conversions/${second.id}`, { method: 'DELETE' })
  t.equal(delQueued.status, 200)
  t.equal((await delQueued.json() as JobView).status, 'cancelled', 'a queued job is cancelled at once')
  t.notOk(existsSync(join(srv.dataDir, 'conversions', second.id)), 'the queued job\'s folder is removed')
  t.equal((await (await fetch(`${srv.url}/v1/conversions/${id}`)).json() as JobView).status, 'running', 'the running job is unaffected')

  const del = await fetch(`${srv.url}/v1/conversions/${id}`, { method: 'DELETE' })
  t.equal(del.status, 200)
  t.equal((await del.json() as JobView).status, 'cancelled', 'DELETE answers the cancelled job')
  t.equal((await (await fetch(`${srv.url}/v1/conversions/${id}`)).json() as JobView).status, 'cancelled', 'GET shows it cancelled')
  t.notOk(trainerRunning(id), 'the trainer process is gone')
  t.notOk(existsSync(join(srv.dataDir, 'conversions', id)), 'the working folder is removed')
  t.notOk(existsSync(join(srv.modelsDir, 'tiny-long')), 'no model folder was installed')
  const models = await (await fetch(`${srv.url}/v1/models`)).json() as { data: Array<{ id: string }> }
  t.notOk(models.data.some((m) => m.id === 'tiny-long'), 'no model is served under the name')

  const again = await fetch(`${srv.url}/v1/conversions/${id}`, { method: 'DELETE' })
  t.equal(again.status, 409, 'cancelling again is a conflict')
  const err = await again.json() as { error: { message: string, type: string, param: string | null } }
  t.match(err.error.message, /cancelled/, 'naming the status it already has')

  t.equal(await metricValue(srv.url, 't2r_conversion_jobs', 'status="cancelled"'), 2, 'metrics count both cancelled jobs')
  t.equal(await metricValue(srv.url, 't2r_conversion_jobs', 'status="running"'), 0, 'and none running')

  const missing = await fetch(`${srv.url}/v1/conversions/conv_doesnotexist`, { method: 'DELETE' })
  t.equal(missing.status, 404, 'cancelling an unknown job is 404')
})
