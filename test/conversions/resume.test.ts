// A conversion interrupted by a server shutdown resumes from its last checkpoint when a server
// starts again on the same data folder, and goes on to succeed.
import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, startServer } from '../helpers/server.ts'
import { sseEvents, type SseEvent } from '../helpers/sse.ts'

/** Yields a job's SSE events as they arrive. */
async function * sseEventsOf (url: string, signal?: AbortSignal): AsyncGenerator<SseEvent> {
  yield * sseEvents(await fetch(url, { signal }))
}

const trainerRunning = (id: string): boolean =>
  execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').some((l) => l.includes(id) && l.includes('t2r'))

t.test('a job interrupted by shutdown resumes from its checkpoint after a restart', async (t) => {
  const scratch = mkdtempSync(join(tmpdir(), 't2r-resume-'))
  const modelsDir = join(scratch, 'models')
  const dataDir = join(scratch, 'data')
  cpSync(tinyModelsDir(), modelsDir, { recursive: true })
  t.teardown(() => { rmSync(scratch, { recursive: true, force: true }) })

  // First server: run until past the first checkpoint (every 15 steps for 60), then shut down.
  const first = await startServer({ modelsDir, dataDir, copyModels: false })
  let firstClosed = false
  t.teardown(async () => { if (!firstClosed) await first.close() })
  const res = await postJson(`${first.url}/v1/conversions`, {
    source_model: 'tiny-base', name: 'tiny-resumed', steps: 60, transfer_steps: 0, batch_size: 2, sequence_length: 16, feature_dim: 8, eval_windows: 200
  })
  t.equal(res.status, 202)
  const { id } = await res.json() as { id: string }

  const abort = new AbortController()
  let reached = 0
  let finalBeforeClose: string | null = null
  try {
    for await (const e of sseEventsOf(`${first.url}/v1/conversions/${id}/events`, abort.signal)) {
      if (e.event === 'progress' && e.data.event === 'step' && e.data.step >= 20) { reached = e.data.step; break }
      if (e.event === 'status' && ['succeeded', 'failed', 'cancelled'].includes(e.data.status)) { finalBeforeClose = e.data.status; break }
    }
  } finally {
    abort.abort()
  }
  t.equal(finalBeforeClose, null, 'the job had not ended before the shutdown')
  t.ok(reached >= 20, 'the job passed step 20 (a checkpoint was written at 15)')
  await first.close()
  firstClosed = true

  t.notOk(trainerRunning(id), 'shutting down stopped the trainer')
  t.ok(existsSync(join(dataDir, 'conversions', id, 'run', 'state.safetensors')), 'the run\'s checkpoint is on disk')
  const db = new Database(join(dataDir, 'conversions', 'jobs.sqlite'), { readonly: true })
  const row = db.prepare('SELECT status FROM jobs WHERE id = ?').get(id) as { status: string } | undefined
  db.close()
  t.equal(row?.status, 'running', 'the job is still recorded as running')
  t.notOk(existsSync(join(modelsDir, 'tiny-resumed')), 'no model was installed yet')

  // Second server on the same folders: the job resumes from the checkpoint and finishes.
  const second = await startServer({ modelsDir, dataDir, copyModels: false })
  t.teardown(async () => { await second.close() })
  const events: SseEvent[] = []
  for await (const e of sseEventsOf(`${second.url}/v1/conversions/${id}/events`)) events.push(e)

  t.match(events[0], { event: 'status', data: { id } }, 'the stream opens with the job\'s status')
  t.match(events[0].data.status, /^(queued|running)$/, 'which is queued or running again')
  const progress = events.filter((e) => e.event === 'progress').map((e) => e.data)
  // The teacher's figure comes first; the interrupted run already computed it, so it is cached.
  const teacher = progress.filter((p) => p.event === 'eval' && p.model === 'teacher')
  t.same(teacher.map((p) => p.cached), [true], 'the restarted trainer took the teacher\'s perplexity from the cache')
  const trainerEvents = progress.filter((p) => p.event !== 'start' && p.model !== 'teacher')
  t.equal(trainerEvents[0]?.event, 'resume', 'then began by resuming')
  const resumedAt = trainerEvents[0]?.step as number
  // The trainer runs on between the step this test saw and the shutdown (the events it reads lag:
  // once, seen 20, resumed at 30), so the bound is the checkpoints themselves: every 15 steps.
  t.ok(resumedAt >= 15 && resumedAt % 15 === 0 && resumedAt < 60, 'from one of its checkpoints (every 15 steps), before the end')
  t.comment(`stopped after step ${reached}, resumed at ${resumedAt}`)
  const steps = progress.filter((p) => p.event === 'step').map((p) => p.step as number)
  t.ok(steps.length > 0 && steps.every((s) => s > resumedAt), 'training went on after the checkpoint, not from the start')
  t.equal(steps.at(-1), 60, 'up to the last step')
  t.equal(events.at(-1)?.event, 'status')
  t.equal(events.at(-1)?.data.status, 'succeeded', 'the resumed job succeeded')

  const job = await (await fetch(`${second.url}/v1/conversions/${id}`)).json() as { status: string, step: number, result: { model: string } | null }
  t.equal(job.status, 'succeeded')
  t.equal(job.step, 60)
  t.equal(job.result?.model, 'tiny-resumed')
  const gen = await postJson(`${second.url}/v1/completions`, { model: 'tiny-resumed', prompt: 'The', max_tokens: 3, ignore_eos: true })
  t.equal(gen.status, 200, 'the resumed conversion serves completions')
  t.equal((await gen.json() as { usage: { completion_tokens: number } }).usage.completion_tokens, 3)
})
