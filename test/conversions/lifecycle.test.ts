// A conversion from submission to a served model: 202 + Location, SSE progress until 'succeeded',
// the job's result (perplexities, parity), the new model listed, generating and on disk, and the
// job counted in /metrics.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { metricValue, postJson, readSse, startServer } from '../helpers/server.ts'

t.test('a conversion job runs to a served, generating t2r model', async (t) => {
  const srv = await startServer({ modelsDir: tinyModelsDir(), copyModels: true })
  t.teardown(async () => { await srv.close() })

  const res = await postJson(`${srv.url}/v1/conversions`, {
    source_model: 'tiny-base', name: 'tiny-conv', steps: 4, transfer_steps: 2, batch_size: 2, sequence_length: 16, eval_windows: 2, feature_dim: 8
  })
  t.equal(res.status, 202, 'accepted')
  const job = await res.json() as { id: string, object: string, status: string }
  t.equal(job.object, 'conversion')
  t.match(job.status, /^(queued|running)$/, 'queued or already running')
  t.equal(res.headers.get('location'), `/v1/conversions/${job.id}`, 'Location names the job')

  const events = await readSse(await fetch(`${srv.url}/v1/conversions/${job.id}/events`))
  const progress = events.filter((e) => e.event === 'progress').map((e) => e.data)
  const steps = progress.filter((p) => p.event === 'step')
  t.ok(steps.length > 0, 'progress events report training steps')
  for (const s of steps) {
    t.ok(Number.isInteger(s.step) && s.step >= 1 && s.step <= 6, 'step is within the job (2 transfer + 4 finetuning)')
    t.ok(Number.isFinite(s.loss), 'with a finite loss')
  }
  t.equal(steps.at(-1).step, 6, 'the last step is the last one')
  t.ok(steps.some((s) => s.phase === 'transfer') && steps.some((s) => s.phase === 'finetune'), 'attention transfer, then finetuning')
  const last = events.at(-1)!
  t.equal(last.event, 'status', 'the stream ends with a status event')
  t.equal(last.data.status, 'succeeded', 'the job succeeded')

  const done = await (await fetch(`${srv.url}/v1/conversions/${job.id}`)).json() as { status: string, error: string | null, result: { test_perplexity: number, teacher_test_perplexity: number, parity: Record<string, number | null> } }
  t.equal(done.status, 'succeeded')
  t.equal(done.error, null)
  t.ok(Number.isFinite(done.result.test_perplexity) && done.result.test_perplexity > 1, 'the student has a test perplexity')
  t.ok(Number.isFinite(done.result.teacher_test_perplexity) && done.result.teacher_test_perplexity > 1, 'the teacher has a test perplexity')
  for (const k of ['fullMaxDiff', 'stepwiseMaxDiff', 'stateMaxDiff']) {
    const v = done.result.parity[k]
    t.ok(typeof v === 'number' && v <= 1e-3, `parity ${k} is within 1e-3`)
  }

  const list = await (await fetch(`${srv.url}/v1/conversions`)).json() as { data: Array<{ id: string }> }
  t.ok(list.data.some((j) => j.id === job.id), 'the job is listed')

  const models = await (await fetch(`${srv.url}/v1/models`)).json() as { data: Array<{ id: string, architecture: string }> }
  t.equal(models.data.find((m) => m.id === 'tiny-conv')?.architecture, 't2r', '/v1/models lists tiny-conv as t2r')

  const gen = await postJson(`${srv.url}/v1/completions`, { model: 'tiny-conv', prompt: 'The', max_tokens: 4, ignore_eos: true })
  t.equal(gen.status, 200, 'the new model serves completions')
  const body = await gen.json() as { model: string, choices: Array<{ text: string }>, usage: { completion_tokens: number } }
  t.equal(body.model, 'tiny-conv')
  t.equal(body.usage.completion_tokens, 4, 'four tokens generated')
  t.type(body.choices[0].text, 'string')

  const manifest = join(srv.modelsDir, 'tiny-conv', 'model.json')
  t.ok(existsSync(manifest), 'models/tiny-conv/model.json exists')
  t.equal((JSON.parse(readFileSync(manifest, 'utf8')) as { architecture: string }).architecture, 't2r')

  t.equal(await metricValue(srv.url, 't2r_conversion_jobs', 'status="succeeded"'), 1, 'metrics count one succeeded job')
  t.equal(await metricValue(srv.url, 't2r_conversion_jobs', 'status="running"'), 0, 'and none running')
})
