// Conversion jobs: POST /v1/conversions (202), GET /v1/conversions[/:id], DELETE /v1/conversions/:id
// (cancel), GET /v1/conversions/:id/events (SSE progress until the job ends).
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import type { Job } from '../conversions/job-store.ts'
import { requireAdmin } from '../auth/tenant.ts'
import { unavailable } from '../errors.ts'
import { SseStream } from '../http/sse.ts'

const Corpus = Type.Union([
  Type.Object({ type: Type.Literal('sotu') }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('text'), text: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('file'), path: Type.String({ minLength: 1, maxLength: 512 }) }, { additionalProperties: false })
])
const CreateBody = Type.Object({
  source_model: Type.String({ minLength: 1 }),
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
  eval_windows: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 }))
}, { additionalProperties: false })
const IdParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) })
type IdParamsT = Static<typeof IdParams>

const FINAL = new Set(['succeeded', 'failed', 'cancelled'])

export function jobView (j: Job) {
  return { object: 'conversion', ...j }
}

export default async function conversionRoutes (app: FastifyInstance): Promise<void> {
  app.addHook('onRequest', requireAdmin) // conversion jobs are server-wide: admin keys only
  const service = (): NonNullable<typeof app.t2r.conversions> => {
    const c = app.t2r.conversions
    if (c === null) throw unavailable('conversions are disabled on this server')
    return c
  }

  app.post('/v1/conversions', { schema: { body: CreateBody }, bodyLimit: app.t2r.config.conversions.maxCorpusBytes * 2 + 65536 }, async (request, reply) => {
    const b = request.body as Static<typeof CreateBody>
    const job = await service().submit({
      source_model: b.source_model,
      name: b.name,
      corpus: b.corpus ?? { type: 'sotu' },
      // Defaults: the recipe of the shipped sotu-t2r (feature size 64, 100 attention-transfer steps,
      // 500 finetuning steps), which met the 1.10 perplexity-ratio bound on the SOTU teacher.
      feature_dim: b.feature_dim ?? 64,
      steps: b.steps ?? 500,
      transfer_steps: b.transfer_steps ?? 100,
      learning_rate: b.learning_rate ?? 1e-3,
      batch_size: b.batch_size ?? 16,
      sequence_length: b.sequence_length ?? 256,
      seed: b.seed ?? 0,
      attention_only: b.attention_only ?? false,
      eval_windows: b.eval_windows ?? null
    })
    return await reply.code(202).header('location', `/v1/conversions/${job.id}`).send(jobView(job))
  })

  app.get('/v1/conversions', async () => ({ object: 'list', data: service().list().map(jobView) }))

  app.get('/v1/conversions/:id', { schema: { params: IdParams } }, async (request) => jobView(service().get((request.params as IdParamsT).id)))

  app.delete('/v1/conversions/:id', { schema: { params: IdParams } }, async (request) => jobView(await service().cancel((request.params as IdParamsT).id)))

  app.get('/v1/conversions/:id/events', { schema: { params: IdParams } }, async (request, reply) => {
    const { id } = request.params as IdParamsT
    const s = service()
    const job = s.get(id)
    const sse = new SseStream(request, reply)
    sse.send(jobView(job), 'status')
    if (FINAL.has(job.status)) { sse.end(); return }
    const listener = (e: { type: string, job?: Job }): void => {
      if (e.type === 'status' && e.job !== undefined) {
        sse.send(jobView(e.job), 'status')
        if (FINAL.has(e.job.status)) { s.off(`job:${id}`, listener); sse.end() }
      } else {
        sse.send(e, 'progress')
      }
    }
    s.on(`job:${id}`, listener)
    sse.whenClosed(() => { s.off(`job:${id}`, listener) })
  })
}
