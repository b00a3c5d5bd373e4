// Exclusive use of a session across replicas: a lease key set with SET NX PX (so a killed replica's
// lease expires by itself after leaseMs), renewed while the generation runs, and released with a
// compare-and-delete so a replica never frees a lease another one took after its own expired.
// The token also fences the write-through (redis-store.ts writes only while it still holds it).
import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'

const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`

export interface HeldLease {
  key: string
  token: string
}

export class RedisLeases {
  /** Leases this process holds, with their renewal timers. */
  private readonly held = new Map<string, { lease: HeldLease, timer: NodeJS.Timeout }>()

  constructor (private readonly redis: Redis, readonly leaseMs: number) {}

  /** A fresh token for a lease this process is about to take (the acquire script sets it NX). */
  newLease (key: string): HeldLease { return { key, token: randomUUID() } }

  isHeldHere (key: string): boolean { return this.held.has(key) }

  /** Starts renewing a lease the store just took; a renewal that fails is left to the write's fence. */
  hold (lease: HeldLease): void {
    const timer = setInterval(() => {
      this.redis.eval(RENEW, 1, lease.key, lease.token, this.leaseMs).catch(() => {})
    }, Math.max(1, Math.floor(this.leaseMs / 3)))
    timer.unref()
    this.held.set(lease.key, { lease, timer })
  }

  /** The lease this process holds on `key`, if any. */
  get (key: string): HeldLease | undefined { return this.held.get(key)?.lease }

  /** Stops renewing; `inRedis` also deletes it there (compare-and-delete), when the caller has not. */
  async drop (key: string, { inRedis }: { inRedis: boolean }): Promise<void> {
    const h = this.held.get(key)
    if (h === undefined) return
    clearInterval(h.timer)
    this.held.delete(key)
    // Unreachable Redis: the lease expires by itself within leaseMs.
    if (inRedis) await this.redis.eval(RELEASE, 1, key, h.lease.token).catch(() => {})
  }

  close (): void {
    for (const h of this.held.values()) clearInterval(h.timer)
    this.held.clear()
  }
}
