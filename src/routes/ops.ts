// Operations: GET /metrics (Prometheus text) and GET /ready (200 once models are loaded).
import type { FastifyInstance } from 'fastify'
import { unavailable } from '../errors.ts'

export default async function opsRoutes (app: FastifyInstance): Promise<void> {
  const { metrics, registry, generation, sessions } = app.t2r

  app.get('/metrics', async (_request, reply) => {
    metrics.sessions.set(sessions.size)
    metrics.residentSessions.set(sessions.residentCount)
    metrics.sessionStateBytes.set(sessions.residentBytes)
    return await reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics())
  })

  app.get('/ready', async () => {
    if (generation.draining) throw unavailable('shutting down')
    if (!registry.ready) throw unavailable('models are loading')
    return {
      status: 'ready',
      models: registry.list().map((m) => m.name),
      failed: Object.fromEntries(registry.failures)
    }
  })
}
