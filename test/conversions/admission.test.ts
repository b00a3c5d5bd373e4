// Submissions that arrive together are admitted as if one at a time: the queue cap and the name
// check hold while earlier submissions are still preparing their data.
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, startServer } from '../helpers/server.ts'

const small = { source_model: 'tiny-base', batch_size: 2, sequence_length: 16, steps: 2, transfer_steps: 0, feature_dim: 8, eval_windows: 2 }
const corpus = { type: 'text', text: 'The Congress shall have power to lay and collect taxes, duties, imposts and excises. '.repeat(20) }

t.test('concurrent submissions respect the queue cap and the name check', async (t) => {
  const srv = await startServer({ modelsDir: tinyModelsDir(), copyModels: true, env: { T2R_MAX_QUEUED_CONVERSIONS: '4' } })
  t.teardown(async () => { await srv.close() })
  const submit = async (name: string): Promise<{ status: number, id?: string, param?: string | null }> => {
    const res = await postJson(`${srv.url}/v1/conversions`, { ...small, name, corpus })
    const body = await res.json() as { id?: string, error?: { param: string | null } }
    return { status: res.status, id: body.id, param: body.error?.param }
  }
  const cancelAll = async (ids: Array<string | undefined>): Promise<void> => {
    for (const id of ids) if (id !== undefined) await fetch(`${srv.url}/v1/conversions/${id}`, { method: 'DELETE' })
  }

  t.test('ten at once with a cap of four: four accepted, six told to retry', async (t) => {
    const replies = await Promise.all(Array.from({ length: 10 }, async (_, i) => await submit(`burst-${i}`)))
    const statuses = replies.map((r) => r.status).sort()
    t.same(statuses, [202, 202, 202, 202, 429, 429, 429, 429, 429, 429])
    const jobs = (await (await fetch(`${srv.url}/v1/conversions`)).json() as { data: unknown[] }).data
    t.equal(jobs.length, 4, 'four jobs exist')
    await cancelAll(replies.map((r) => r.id))
  })

  t.test('one name twice at once: one accepted, one conflict', async (t) => {
    const replies = await Promise.all([submit('twice'), submit('twice')])
    t.same(replies.map((r) => r.status).sort(), [202, 409])
    t.equal(replies.find((r) => r.status === 409)?.param, 'name', 'the conflict names the field')
    await cancelAll(replies.map((r) => r.id))
  })
})
