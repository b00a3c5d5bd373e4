// Operations: GET /metrics (Prometheus text) and GET /ready (200 once models are loaded and the
// session store is reachable).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { UnavailableError } from '../errors.ts'

const Ready = Type.Object({
  status: Type.Literal('ready'),
  models: Type.Array(Type.String()),
  failed: Type.Record(Type.String(), Type.String()),
  session_store: Type.Object({ kind: Type.Union([Type.Literal('disk'), Type.Literal('redis')]), reachable: Type.Boolean() })
})

const opsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { metrics, registry, generation, sessions } = app.t2r

  app.get('/metrics', async (_request, reply) => {
    // A Redis that is away leaves the gauge at its last value rather than failing the scrape.
    await sessions.count().then((n) => { metrics.sessions.set(n) }, () => {})
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

  // Ready once loading has ended, listing the folders that failed and why; 503 before and while
  // draining, and while a configured Redis session store is unreachable.
  app.get('/ready', { schema: { response: { 200: Ready } } }, async () => {
    const down = generation.unavailability({ requireModel: false })
    if (down !== null) throw down
    const store = await sessions.health()
    if (!store.reachable) throw new UnavailableError(`session store (${store.kind}) unreachable: ${store.error ?? 'no answer'}; generation on sessions answers 503, stateless generation still works`)
    return {
      status: 'ready' as const,
      models: registry.list().map((m) => m.name),
      failed: Object.fromEntries(registry.failures),
      session_store: { kind: store.kind, reachable: true }
    }
  })
}

export default opsRoutes
