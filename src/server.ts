// Builds the server: Fastify with its limits and logger, the services, and the routes. Models load
// after the server listens (503 until then); close() drains generations and flushes sessions.
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import type { DestinationStream } from 'pino'
import { registerApp } from './app.ts'
import type { Config } from './config.ts'
import { ConversionService } from './conversions/service.ts'
import { GenerationService } from './generation/service.ts'
import { loggerOptions } from './http/logging.ts'
import { createMetrics } from './metrics.ts'
import { ModelRegistry } from './models/registry.ts'
import type { AppServices } from './plugins/context.ts'
import { SessionStore } from './sessions/store.ts'

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
    requestTimeout: 0,
    connectionTimeout: 0,
    keepAliveTimeout: 65_000,
    return503OnClosing: true,
    genReqId: (req) => (typeof req.headers['x-request-id'] === 'string' && req.headers['x-request-id'].length <= 128 ? req.headers['x-request-id'] : crypto.randomUUID()),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    logger: loggerOptions(config.logLevel, logStream)
  })
  const metrics = createMetrics()
  const registry = new ModelRegistry(config, metrics, app.log)
  const sessions = new SessionStore({
    dir: join(config.dataDir, 'sessions'),
    ttlSeconds: config.sessionTtlSeconds,
    maxResident: config.maxResidentSessions,
    manifestOf: (name) => registry.get(name)?.manifest
  })
  const generation = new GenerationService(registry, sessions, metrics, config)
  const conversions = config.conversions.enabled ? new ConversionService(config, registry, metrics, app.log) : null
  const services: AppServices = { config, metrics, registry, sessions, generation, conversions, startedAt: Date.now() }
  await registerApp(app, services)

  let closing: Promise<void> | null = null
  return {
    app,
    services,
    loadModels: async () => {
      await registry.loadAll()
      conversions?.pump()
    },
    close: async () => {
      closing ??= (async () => {
        generation.draining = true
        // In-flight generations finish (bounded), then the engines stop; sessions are already on
        // disk (write-through), so nothing else needs flushing.
        await Promise.all(registry.list().map(async (m) => { await m.engine.drained(10_000) }))
        await conversions?.close()
        await app.close()
        await registry.close()
        sessions.close()
      })()
      await closing
    }
  }
}
