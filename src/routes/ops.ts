// Operations: GET /metrics (Prometheus text) and GET /ready (200 once models are loaded; its body
// says whether the session store is reachable).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'

const Ready = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('degraded')]),
  models: Type.Array(Type.String()),
  failed: Type.Record(Type.String(), Type.String()),
  session_store: Type.Object({ kind: Type.Union([Type.Literal('disk'), Type.Literal('redis')]), reachable: Type.Boolean(), error: Type.Optional(Type.String()) })
})

const opsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { metrics, registry, generation, sessions } = app.t2r

  app.get('/metrics', async (_request, reply) => {
    // A Redis that is away leaves the gauge at its last value rather than failing the scrape.
    await sessions.count().then((n) => { metrics.sessions.set(n) }, () => {})
    metrics.sessionStoreUp.set((await sessions.health()).reachable ? 1 : 0)
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
  // draining. An unreachable Redis session store is 'degraded', still 200: every replica shares that
  // Redis, so a load balancer that took them all out would stop stateless generation too, which
  // keeps working (session requests answer 503 on their own). t2r_session_store_up alerts on it.
  app.get('/ready', { schema: { response: { 200: Ready } } }, async () => {
    const down = generation.unavailability({ requireModel: false })
    if (down !== null) throw down
    const store = await sessions.health()
    return {
      status: store.reachable ? 'ready' as const : 'degraded' as const,
      models: registry.list().map((m) => m.name),
      failed: Object.fromEntries(registry.failures),
      session_store: store.reachable
        ? { kind: store.kind, reachable: true }
        : { kind: store.kind, reachable: false, error: `unreachable: ${store.error ?? 'no answer'}; generation on sessions answers 503, stateless generation still works` }
    }
  })
}

export default opsRoutes
