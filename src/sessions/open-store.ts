// Picks the session store from the configuration: Redis when --redis-url is set (sessions shared by
// replicas), otherwise the data folder (one process, the quick-start default).
import { join } from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config.ts'
import type { Manifest } from '../models/manifest.ts'
import { DiskSessionStore } from './disk-store.ts'
import { RedisSessionStore } from './redis-store.ts'
import type { SessionStore } from './store.ts'

export function openSessionStore (config: Config, manifestOf: (model: string) => Manifest | undefined, log: FastifyBaseLogger): SessionStore {
  if (config.redisUrl !== null) {
    return new RedisSessionStore({ url: config.redisUrl, ttlSeconds: config.sessionTtlSeconds, leaseMs: config.sessionLeaseMs, manifestOf, log })
  }
  return new DiskSessionStore({
    dir: join(config.dataDir, 'sessions'),
    chatTurnsDir: join(config.dataDir, 'chat-turns'),
    ttlSeconds: config.sessionTtlSeconds,
    maxResident: config.maxResidentSessions,
    manifestOf
  })
}
