// Which conversion jobs a server has: none (--conversions off), its own (SQLite and one trainer
// here, the default), or a BullMQ queue on REDIS_URL run by `t2r worker` processes.
import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config.ts'
import type { Metrics } from '../metrics.ts'
import type { ModelRegistry } from '../models/registry.ts'
import type { ConversionJobs } from './jobs.ts'
import { QueuedConversions } from './queue/queued-service.ts'
import { ConversionService } from './service.ts'

export function createConversions (config: Config, registry: ModelRegistry, metrics: Metrics, log: FastifyBaseLogger): ConversionJobs | null {
  if (!config.conversions.enabled) return null
  if (config.redisUrl === null) return new ConversionService(config, registry, metrics, log)
  return new QueuedConversions(config, registry, metrics, log, config.redisUrl)
}
