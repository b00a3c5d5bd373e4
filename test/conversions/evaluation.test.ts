// What a conversion job spends on evaluation: progress is scored on a sample of the validation
// split (the events say how many windows), the finished model on the test split, and the teacher
// once per teacher and test tokens: a second job from the same teacher reuses its figure.
import t from 'tap'
import { RECIPE } from '../../src/contract/recipe.ts'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, readSse, startServer } from '../helpers/server.ts'

// eval_windows 40 bounds the final and the teacher's evaluations; progress samples fewer.
const job = { source_model: 'tiny-base', batch_size: 2, sequence_length: 16, steps: 4, transfer_steps: 0, feature_dim: 8, eval_windows: 40 }

t.test('progress on a validation sample, the result on test, the teacher scored once', async (t) => {
  t.ok(RECIPE.eval_sample_windows < job.eval_windows, 'the recipe\'s sample is smaller than this job\'s evaluations')
  const srv = await startServer({ modelsDir: tinyModelsDir(), copyModels: true })
  t.teardown(async () => { await srv.close() })

  const evalsOf = async (name: string): Promise<Array<Record<string, unknown>>> => {
    const res = await postJson(`${srv.url}/v1/conversions`, { ...job, name })
    t.equal(res.status, 202, `${name} accepted`)
    const { id } = await res.json() as { id: string }
    const events = await readSse(await fetch(`${srv.url}/v1/conversions/${id}/events`))
    t.equal(events.at(-1)?.data.status, 'succeeded', `${name} succeeded`)
    return events.filter((e) => e.event === 'progress' && e.data.event === 'eval').map((e) => e.data as Record<string, unknown>)
  }

  const first = await evalsOf('tiny-eval-1')
  const progress = first.filter((e) => 'finetune_step' in e)
  t.same(progress.map((e) => e.finetune_step), [1, 2, 3, 4], 'scored at the recipe\'s points (a quarter of the steps each)')
  for (const e of progress) t.match(e, { split: 'validation', sample: true, windows: RECIPE.eval_sample_windows }, `step ${e.step as number}: a sample of ${RECIPE.eval_sample_windows} validation windows`)
  t.match(first.filter((e) => e.final === true), [{ split: 'test', windows: job.eval_windows }], 'the finished model on the test split')
  const teacher1 = first.filter((e) => e.model === 'teacher')
  t.match(teacher1, [{ split: 'test', windows: job.eval_windows, cached: false }], 'the first job scores the teacher')

  const teacher2 = (await evalsOf('tiny-eval-2')).filter((e) => e.model === 'teacher')
  t.match(teacher2, [{ split: 'test', windows: job.eval_windows, cached: true }], 'the second job takes the teacher\'s figure from the cache')
  t.equal(teacher2[0]?.perplexity, teacher1[0]?.perplexity, 'the same figure')
  const jobs = (await (await fetch(`${srv.url}/v1/conversions`)).json() as { data: Array<{ teacher_perplexity: number }> }).data
  t.same(jobs.map((j) => j.teacher_perplexity), [teacher1[0]?.perplexity, teacher1[0]?.perplexity], 'both jobs report it')
})
