// Registers the three tiers: external plugins, the app's own services, then routes. Routes get
// their types from their TypeBox schemas (the type provider); every error goes through one mapping
// (src/http/errors.ts).
import websocket from '@fastify/websocket'
import type { FastifyInstance } from 'fastify'
import { sendError } from './http/errors.ts'
import access from './plugins/access.ts'
import context, { type AppServices } from './plugins/context.ts'
import chatRoutes from './routes/chat.ts'
import conversionRoutes from './routes/conversions.ts'
import openAiRoutes from './routes/openai.ts'
import opsRoutes from './routes/ops.ts'
import sessionRoutes from './routes/sessions.ts'
import streamRoutes from './routes/stream-ws.ts'
import tgiRoutes from './routes/tgi.ts'

export async function registerApp (app: FastifyInstance, services: AppServices): Promise<void> {
  await app.register(websocket, { options: { maxPayload: 4 * 1024 * 1024 } })
  await app.register(context, { services })

  // Request count and duration by route, for every request including hijacked streams.
  app.addHook('onRequest', async (request, reply) => {
    const start = performance.now()
    reply.raw.once('close', () => {
      const labels = { route: request.routeOptions.url ?? 'unmatched', method: request.method, status: String(reply.raw.statusCode) }
      services.metrics.requests.inc(labels)
      services.metrics.requestDuration.observe(labels, (performance.now() - start) / 1000)
    })
  })
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err))
  app.setNotFoundHandler((request, reply) => sendError(request, reply, Object.assign(new Error(`route ${request.method} ${request.url.split('?')[0]} not found`), { statusCode: 404 })))
  await app.register(access, { access: services.config.access })

  await app.register(tgiRoutes)
  await app.register(openAiRoutes)
  await app.register(chatRoutes)
  await app.register(sessionRoutes)
  await app.register(streamRoutes)
  await app.register(conversionRoutes)
  await app.register(opsRoutes)
}
