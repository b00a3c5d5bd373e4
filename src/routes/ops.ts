// Operations: GET /metrics (Prometheus text) and GET /ready (200 once models are loaded).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'

const Ready = Type.Object({
  status: Type.Literal('ready'),
  models: Type.Array(Type.String()),
  failed: Type.Record(Type.String(), Type.String())
})

const opsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { metrics, registry, generation, sessions } = app.t2r

  app.get('/metrics', async (_request, reply) => {
    metrics.sessions.set(sessions.size)
    metrics.residentSessions.set(sessions.residentCount)
    metrics.sessionStateBytes.set(sessions.residentBytes)
    for (const m of registry.list()) {
      const q = generation.queueWait(m.name)
      metrics.queueWaiting.set({ model: m.name }, q.waiting)
      metrics.queueOldestWait.set({ model: m.name }, q.oldestMs / 1000)
      metrics.queueExpectedWait.set({ model: m.name }, q.expectedMs / 1000)
    }
    return await reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics())
  })

  // Ready once loading has ended, listing the folders that failed and why; 503 before and while draining.
  app.get('/ready', { schema: { response: { 200: Ready } } }, async () => {
    const down = generation.unavailability({ requireModel: false })
    if (down !== null) throw down
    return {
      status: 'ready' as const,
      models: registry.list().map((m) => m.name),
      failed: Object.fromEntries(registry.failures)
    }
  })
}

export default opsRoutes
