// Builds the server: Fastify with its limits and logger, the services, and the routes. Models load
// after the server listens (503 until then); close() drains generations and flushes sessions.
import Fastify, { type FastifyInstance } from 'fastify'
import type { DestinationStream } from 'pino'
import { registerApp } from './app.ts'
import type { Config } from './config.ts'
import { createConversions } from './conversions/create.ts'
import { ortBackends } from './engine/engine.ts'
import { GenerationService } from './generation/service.ts'
import { loggerOptions } from './http/logging.ts'
import { createMetrics } from './metrics.ts'
import { ModelRegistry } from './models/registry.ts'
import type { AppServices } from './plugins/context.ts'
import { openSessionStore } from './sessions/open-store.ts'

export interface Server {
  app: FastifyInstance
  services: AppServices
  /** Loads every model folder; the server answers 503 on generation routes until it resolves. */
  loadModels (): Promise<void>
  close (): Promise<void>
}

/** `logStream`: where the log goes instead of stdout (tests read it). */
export async function buildServer (config: Config, { logStream }: { logStream?: DestinationStream } = {}): Promise<Server> {
  const app = Fastify({
    bodyLimit: config.bodyLimit,
    requestTimeout: config.requestTimeoutMs,
    // Node arms its request-timeout checks only for a timeout given when the server is created, and
    // checks every 30 s by default (a slow body would live twice as long): both are set here.
    http: { requestTimeout: config.requestTimeoutMs, connectionsCheckingInterval: Math.min(1000, config.requestTimeoutMs) },
    connectionTimeout: 0,
    keepAliveTimeout: 65_000,
    return503OnClosing: true,
    genReqId: (req) => (typeof req.headers['x-request-id'] === 'string' && req.headers['x-request-id'].length <= 128 ? req.headers['x-request-id'] : crypto.randomUUID()),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    logger: loggerOptions(config.logLevel, logStream)
  })
  app.server.maxConnections = config.maxConnections
  const metrics = createMetrics()
  const registry = new ModelRegistry(config, metrics, app.log, ortBackends(config))
  const sessions = openSessionStore(config, (name) => registry.get(name)?.manifest, app.log)
  const generation = new GenerationService(registry, sessions, metrics, config)
  const conversions = createConversions(config, registry, metrics, app.log)
  const services: AppServices = { config, metrics, registry, sessions, generation, conversions, startedAt: Date.now() }
  await registerApp(app, services)

  let closing: Promise<void> | null = null
  return {
    app,
    services,
    loadModels: async () => {
      await registry.loadAll()
      conversions?.start()
    },
    close: async () => {
      closing ??= (async () => {
        generation.draining = true
        // In-flight generations get the drain period to finish; then the engines stop, cancelling
        // what is left (its streams end with finish_reason "cancelled"), so the drain is a bound.
        // Session writes are awaited: every answered turn is on disk.
        await Promise.all(registry.list().map(async (m) => { await m.engine.drained(config.shutdownDrainMs) }))
        await registry.close()
        await conversions?.close()
        await app.close()
        await sessions.flushed()
        await sessions.close()
      })()
      await closing
    }
  }
}
