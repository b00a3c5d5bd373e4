// The app's own services, decorated onto the Fastify instance for the routes.
import fp from 'fastify-plugin'
import type { Config } from '../config.ts'
import type { GenerationService } from '../generation/service.ts'
import type { Metrics } from '../metrics.ts'
import type { ModelRegistry } from '../models/registry.ts'
import type { SessionStore } from '../sessions/store.ts'
import type { ConversionJobs } from '../conversions/jobs.ts'

export interface AppServices {
  config: Config
  metrics: Metrics
  registry: ModelRegistry
  sessions: SessionStore
  generation: GenerationService
  conversions: ConversionJobs | null
  startedAt: number
}

declare module 'fastify' {
  interface FastifyInstance {
    t2r: AppServices
  }
}

export default fp<{ services: AppServices }>(async (app, { services }) => {
  app.decorate('t2r', services)
}, { name: 't2r-context' })
