// Conversion jobs on the BullMQ queue, with real processes: Redis, two server replicas (A, B) and
// a `t2r worker` sharing a models folder and a conversions folder. A job submitted on A is run by
// the worker while B relays its events and status and cancels it; another survives `kill -9` of
// its worker and SIGTERM of the next, resumes from its checkpoint each time, and its model is
// served by B.
import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { startRedis } from '../helpers/redis.ts'
import { metricValue, postJson, spawnServer } from '../helpers/server.ts'
import { sseEvents, type SseEvent } from '../helpers/sse.ts'
import { spawnWorker, type RunningWorker } from '../helpers/worker.ts'

interface JobView { id: string, status: string, step: number, result: { model: string } | null }

const trainerRunning = (id: string): boolean =>
  execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').some((l) => l.includes(id) && l.includes('t2r'))

/** Whether the server lists the model within 30 s (a replica loads a published model as its message arrives). */
async function listed (url: string, model: string): Promise<boolean> {
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(100)) {
    const models = await (await fetch(`${url}/v1/models`)).json() as { data: Array<{ id: string }> }
    if (models.data.some((m) => m.id === model)) return true
  }
  return false
}

/** Reads a live stream's events up to the first that `stop` accepts (or its end), leaving it open:
 * a `for await` loop left with break would close it. */
async function readUntil (events: AsyncGenerator<SseEvent>, stop: (e: SseEvent) => boolean): Promise<SseEvent[]> {
  const seen: SseEvent[] = []
  for (let r = await events.next(); r.done !== true; r = await events.next()) {
    seen.push(r.value)
    if (stop(r.value)) break
  }
  return seen
}

const FINAL = ['succeeded', 'failed', 'cancelled']
const JOB = { source_model: 'tiny-base', transfer_steps: 0, batch_size: 2, sequence_length: 16, feature_dim: 8, eval_windows: 2 }

t.test('conversions on a queue: any replica answers, a worker runs them', async (t) => {
  const redis = await startRedis()
  t.teardown(async () => { await redis.stop() })
  const scratch = mkdtempSync(join(tmpdir(), 't2r-scale-conv-'))
  t.teardown(() => { rmSync(scratch, { recursive: true, force: true }) })
  const modelsDir = join(scratch, 'models')
  const conversionsDir = join(scratch, 'conversions')
  cpSync(tinyModelsDir(), modelsDir, { recursive: true })
  mkdirSync(conversionsDir)
  const shared = { REDIS_URL: redis.url, MODELS_DIR: modelsDir, T2R_CONVERSIONS_DIR: conversionsDir }
  const [a, b] = await Promise.all(['a', 'b'].map(async (name) => await spawnServer({ ...shared, DATA_DIR: join(scratch, name), T2R_DEFAULT_MODEL: 'tiny-t2r' })))
  t.teardown(async () => { await Promise.all([a.kill('SIGTERM'), b.kill('SIGTERM')]) })
  // A 2 s lock: a dead worker's job is back in the queue within seconds.
  const workerEnv = { ...shared, T2R_WORKER_LOCK_SECONDS: '2' }
  let worker: RunningWorker = await spawnWorker(workerEnv)
  t.teardown(async () => { await worker.kill('SIGTERM') })

  t.test('submitted on A, watched and cancelled on B', async (t) => {
    const res = await postJson(`${a.url}/v1/conversions`, { ...JOB, name: 'tiny-q-long', steps: 100000 })
    t.equal(res.status, 202, 'A accepts the job')
    const { id } = await res.json() as JobView
    const events = sseEvents(await fetch(`${b.url}/v1/conversions/${id}/events`))
    const seen = await readUntil(events, (e) => e.event === 'progress' && e.data.event === 'step')
    t.equal(seen[0].event, 'status', 'B\'s stream opens with the job\'s status')
    t.ok(seen.some((e) => e.event === 'status' && e.data.status === 'running'), 'B relays the worker\'s "running"')
    t.ok(trainerRunning(id), 'the worker\'s trainer process is alive')
    const onB = await (await fetch(`${b.url}/v1/conversions/${id}`)).json() as JobView
    t.equal(onB.status, 'running', 'B answers the job\'s status')
    t.ok(onB.step > 0, 'with its progress')
    const all = await (await fetch(`${b.url}/v1/conversions`)).json() as { data: JobView[] }
    t.ok(all.data.some((j) => j.id === id), 'B lists the job')

    const del = await fetch(`${b.url}/v1/conversions/${id}`, { method: 'DELETE' })
    t.equal(del.status, 200, 'B cancels it')
    t.equal((await del.json() as JobView).status, 'cancelled', 'and answers it cancelled')
    const rest = await readUntil(events, () => false)
    t.match(rest.at(-1), { event: 'status', data: { status: 'cancelled' } }, 'B\'s event stream ends with the cancel')
    t.notOk(trainerRunning(id), 'the trainer is gone')
    t.notOk(existsSync(join(conversionsDir, id)), 'the job\'s folder is removed')
    t.equal((await (await fetch(`${a.url}/v1/conversions/${id}`)).json() as JobView).status, 'cancelled', 'A sees it cancelled')
    t.equal((await fetch(`${a.url}/v1/conversions/${id}`, { method: 'DELETE' })).status, 409, 'cancelling again on A is a conflict')
    t.equal(await metricValue(worker.metricsUrl.replace(/\/metrics$/, ''), 't2r_worker_jobs_finished_total', 'status="cancelled"'), 1, 'the worker counts the cancelled job')
  })

  t.test('a job survives kill -9 and SIGTERM of its workers and its model is served by B', async (t) => {
    // 120 steps, checkpoints every 30: the worker is killed past step 40.
    const res = await postJson(`${a.url}/v1/conversions`, { ...JOB, name: 'tiny-q-resumed', steps: 120 })
    t.equal(res.status, 202)
    const { id } = await res.json() as JobView
    const events = sseEvents(await fetch(`${b.url}/v1/conversions/${id}/events`))
    const before = await readUntil(events, (e) => (e.event === 'progress' && e.data.event === 'step' && e.data.step >= 40) || (e.event === 'status' && FINAL.includes(e.data.status)))
    const reached = before.at(-1)?.event === 'progress' ? before.at(-1)?.data.step as number : 0
    t.ok(reached >= 40, 'the job passed step 40 (a checkpoint was written at 30)')
    await worker.kill('SIGKILL')
    // The orphaned trainer dies at its next line of output (its stdout pipe is gone).
    for (const deadline = Date.now() + 30_000; trainerRunning(id) && Date.now() < deadline;) await sleep(100)
    t.notOk(trainerRunning(id), 'the killed worker\'s trainer ended')
    t.equal((await (await fetch(`${b.url}/v1/conversions/${id}`)).json() as JobView).status, 'running', 'the job is not lost: still running')

    worker = await spawnWorker(workerEnv)
    // Past step 80 (a checkpoint at 60), the next worker is stopped the polite way.
    const resumed = await readUntil(events, (e) => e.event === 'progress' && e.data.event === 'step' && e.data.step >= 80)
    const progress = resumed.filter((e) => e.event === 'progress').map((e) => e.data)
    const resume = progress.find((p) => p.event === 'resume')
    t.ok(resume !== undefined, 'the next worker\'s trainer resumed')
    // The trainer runs on a little past the step seen here (its events lag), so the bound is the
    // checkpoints themselves (every 30 steps), as in test/conversions/resume.test.ts.
    t.ok(resume?.step >= 30 && resume?.step % 30 === 0 && resume?.step < 120, `from one of its checkpoints (every 30 steps; seen ${reached} before the kill)`)
    t.comment(`killed after step ${reached}, resumed at ${resume?.step}`)
    const steps = progress.slice(progress.indexOf(resume) + 1).filter((p) => p.event === 'step').map((p) => p.step as number)
    t.equal(steps[0], resume?.step + 1, 'training went on from the checkpoint, not from the start')

    await worker.kill('SIGTERM')
    t.notOk(trainerRunning(id), 'a stopped worker stops its trainer first')
    const requeued = await readUntil(events, (e) => e.event === 'status')
    t.match(requeued.at(-1), { event: 'status', data: { status: 'queued' } }, 'and puts the job back in the queue')
    worker = await spawnWorker(workerEnv)
    const last = await readUntil(events, () => false)
    const lastProgress = last.filter((e) => e.event === 'progress').map((e) => e.data)
    t.ok(lastProgress.find((p) => p.event === 'resume')?.step >= 60, 'the third worker resumed from the checkpoint at 60 or later')
    t.equal(lastProgress.filter((p) => p.event === 'step').at(-1)?.step, 120, 'and trained up to the last step')
    t.match(last.at(-1), { event: 'status', data: { status: 'succeeded' } }, 'the job succeeded')

    const job = await (await fetch(`${b.url}/v1/conversions/${id}`)).json() as JobView
    t.equal(job.result?.model, 'tiny-q-resumed')
    t.ok(existsSync(join(modelsDir, 'tiny-q-resumed', 'model.onnx')), 'the model is in the shared models folder')
    // The worker's "published" message makes each replica load it; B answers once loaded.
    t.ok(await listed(b.url, 'tiny-q-resumed'), 'B lists the new model')
    const gen = await postJson(`${b.url}/v1/completions`, { model: 'tiny-q-resumed', prompt: 'The', max_tokens: 3, ignore_eos: true })
    t.equal(gen.status, 200, 'B serves the new model')
    t.equal((await gen.json() as { usage: { completion_tokens: number } }).usage.completion_tokens, 3, 'three tokens generated')
    t.ok(await listed(a.url, 'tiny-q-resumed'), 'A lists it too')
    const onA = await postJson(`${a.url}/v1/completions`, { model: 'tiny-q-resumed', prompt: 'The', max_tokens: 3, ignore_eos: true })
    t.equal(onA.status, 200, 'and so does A')
  })
})
