// Conversion jobs: POST /v1/conversions (202), GET /v1/conversions[/:id], DELETE /v1/conversions/:id
// (cancel), GET /v1/conversions/:id/events (SSE progress until the job ends).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type, type TSchema } from '@sinclair/typebox'
import { RECIPE } from '../contract/recipe.ts'
import type { Job } from '../conversions/job-store.ts'
import { FINAL_STATUSES, type JobEvent } from '../conversions/jobs.ts'
import { requireAdmin } from '../auth/tenant.ts'
import { unavailable, unprocessable } from '../errors.ts'
import { SseStream } from '../http/sse.ts'

const Corpus = Type.Union([
  Type.Object({ type: Type.Literal('sotu') }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('text'), text: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('file'), path: Type.String({ minLength: 1, maxLength: 512 }) }, { additionalProperties: false })
])
const HfSource = Type.Object({ type: Type.Literal('hf'), path: Type.String({ minLength: 1, maxLength: 512 }) }, { additionalProperties: false })
const CreateBody = Type.Object({
  // One of the two: a loaded softmax model, or a Hugging Face checkpoint under --imports-dir.
  source_model: Type.Optional(Type.String({ minLength: 1 })),
  source: Type.Optional(HfSource),
  name: Type.String({ minLength: 1, maxLength: 64 }),
  corpus: Type.Optional(Corpus),
  feature_dim: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
  steps: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
  transfer_steps: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
  learning_rate: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
  batch_size: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
  sequence_length: Type.Optional(Type.Integer({ minimum: 2, maximum: 8192 })),
  seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1 })),
  attention_only: Type.Optional(Type.Boolean()),
  eval_windows: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
  // Training processes (DistributedDataParallel); batch_size is the global batch, split evenly.
  processes: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 }))
}, { additionalProperties: false })
const IdParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) })

const nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()])
/** The API's view of a job: what clients see, whatever the store keeps. */
const Conversion = Type.Object({
  object: Type.Literal('conversion'),
  id: Type.String(),
  status: Type.String(),
  params: Type.Object({}, { additionalProperties: true }),
  created_at: Type.Integer(),
  started_at: nullable(Type.Integer()),
  finished_at: nullable(Type.Integer()),
  step: Type.Integer(),
  steps: Type.Integer(),
  loss: nullable(Type.Number()),
  tokens_per_s: nullable(Type.Number()),
  eta_s: nullable(Type.Number()),
  eval_perplexity: nullable(Type.Number()),
  teacher_perplexity: nullable(Type.Number()),
  error: nullable(Type.String()),
  result: nullable(Type.Object({}, { additionalProperties: true }))
})

function jobView (j: Job) {
  return {
    object: 'conversion' as const,
    id: j.id,
    status: j.status,
    params: { ...j.params },
    created_at: j.created_at,
    started_at: j.started_at,
    finished_at: j.finished_at,
    step: j.step,
    steps: j.steps,
    loss: j.loss,
    tokens_per_s: j.tokens_per_s,
    eta_s: j.eta_s,
    eval_perplexity: j.eval_perplexity,
    teacher_perplexity: j.teacher_perplexity,
    error: j.error,
    result: j.result
  }
}

const conversionRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.addHook('onRequest', requireAdmin) // conversion jobs are server-wide: admin keys only
  const service = (): NonNullable<typeof app.t2r.conversions> => {
    const c = app.t2r.conversions
    if (c === null) throw unavailable('conversions are disabled on this server')
    return c
  }

  app.post('/v1/conversions', { schema: { body: CreateBody, response: { 202: Conversion } }, bodyLimit: app.t2r.config.conversions.maxCorpusBytes * 2 + 65536 }, async (request, reply) => {
    const b = request.body
    if ((b.source_model === undefined) === (b.source === undefined)) throw unprocessable('name exactly one of source_model (a loaded model) and source ({type: hf, path})', 'source_model')
    const batchSize = b.batch_size ?? RECIPE.batch_size
    if (b.processes !== undefined && batchSize % b.processes !== 0) throw unprocessable(`batch_size ${batchSize} does not split evenly over ${b.processes} processes`, 'processes')
    const job = await service().submit({
      source: b.source ?? { type: 'model', name: b.source_model ?? '' },
      name: b.name,
      corpus: b.corpus ?? { type: 'sotu' },
      // Defaults: the recipe of the shipped sotu-t2r (contract/recipe.json).
      feature_dim: b.feature_dim ?? RECIPE.feature_dim,
      steps: b.steps ?? RECIPE.steps,
      transfer_steps: b.transfer_steps ?? RECIPE.transfer_steps,
      learning_rate: b.learning_rate ?? RECIPE.learning_rate,
      batch_size: batchSize,
      sequence_length: b.sequence_length ?? RECIPE.sequence_length,
      seed: b.seed ?? RECIPE.seed,
      attention_only: b.attention_only ?? RECIPE.attention_only,
      eval_windows: b.eval_windows ?? null,
      ...(b.processes !== undefined ? { processes: b.processes } : {})
    })
    return await reply.code(202).header('location', `/v1/conversions/${job.id}`).send(jobView(job))
  })

  app.get('/v1/conversions', { schema: { response: { 200: Type.Object({ object: Type.Literal('list'), data: Type.Array(Conversion) }) } } },
    async () => ({ object: 'list' as const, data: (await service().list()).map(jobView) }))

  app.get('/v1/conversions/:id', { schema: { params: IdParams, response: { 200: Conversion } } }, async (request) => jobView(await service().get(request.params.id)))

  app.delete('/v1/conversions/:id', { schema: { params: IdParams, response: { 200: Conversion } } }, async (request) => jobView(await service().cancel(request.params.id)))

  app.get('/v1/conversions/:id/events', { schema: { params: IdParams } }, async (request, reply) => {
    const { id } = request.params
    const s = service()
    // Listening starts before the job is read, so no event between the two is missed; events that
    // arrive before the first status is sent wait for it.
    const early: JobEvent[] = []
    let relay = (e: JobEvent): void => { early.push(e) }
    const unwatch = await s.watch(id, (e) => { relay(e) })
    let job: Job
    try {
      job = await s.get(id)
    } catch (err) {
      unwatch()
      throw err
    }
    const sse = new SseStream(request, reply)
    sse.whenClosed(unwatch)
    sse.open()
    sse.send(jobView(job), 'status')
    if (FINAL_STATUSES.has(job.status)) { unwatch(); sse.end(); return }
    relay = (e) => {
      if (e.type === 'status') {
        sse.send(jobView(e.job), 'status')
        if (FINAL_STATUSES.has(e.job.status)) { unwatch(); sse.end(); relay = () => {} }
      } else {
        sse.send(e, 'progress')
      }
    }
    for (const e of early) relay(e)
  })
}

export default conversionRoutes
