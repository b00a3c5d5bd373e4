// The Redis session store (--redis-url): every replica reads and writes the same sessions, so any
// replica can continue any session. Per session, with the session TTL (refreshed on use):
//   t2r:s:{id}:state  the state, byte for byte the export format (state-file.ts)
//   t2r:s:{id}:meta   hash: model, owner, position, pending, stateBytes, times, version, chat turn
//   t2r:s:{id}:lease  the generation lease (redis-lease.ts), a short TTL of its own
// and two sorted sets scored by expiry, t2r:sessions and t2r:owner:<key>, for listing and quotas.
// No state is cached in this process: every generation reads the state Redis holds, so no replica
// can continue from a state another replica has since replaced. Every Redis failure is an
// UnavailableError (503) for the request that needed it; a turn whose write-through fails is not
// reported as a success.
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import { parseTurnRecord } from '../chat/turn-store.ts'
import type { ChatTurnRecord } from '../chat/turns.ts'
import { BusyError, DomainError, NotFoundError, UnavailableError } from '../errors.ts'
import type { Manifest } from '../models/manifest.ts'
import { RedisLeases } from './redis-lease.ts'
import { decodeState, encodeStateAsync, stateBytes, type SessionState } from './state-file.ts'
import { SESSION_ID, type SessionInfo, type SessionStore, type StoreHealth } from './store.ts'

const INDEX = 't2r:sessions'
const OWNER_INDEX = 't2r:owner:'
const keys = (id: string) => ({ state: `t2r:s:{${id}}:state`, meta: `t2r:s:{${id}}:meta`, lease: `t2r:s:{${id}}:lease` })

// KEYS: lease, meta, state, index. ARGV: token, leaseMs, ttlMs, expiresAt, id, owner index prefix.
// Takes the lease if the session exists and nobody holds it, and keeps the session alive a full TTL.
const ACQUIRE = `
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[2], 'expiresAt', ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
redis.call('ZADD', ARGV[6] .. redis.call('HGET', KEYS[2], 'owner'), ARGV[4], ARGV[5])
return 1`

// KEYS: lease, meta, state, index. ARGV: token, state bytes, ttlMs, position, pending, stateBytes,
// lastUsedAt, expiresAt, id, owner index prefix. Writes only under the lease, and frees it.
const COMMIT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
redis.call('HSET', KEYS[2], 'position', ARGV[4], 'pending', ARGV[5], 'stateBytes', ARGV[6], 'lastUsedAt', ARGV[7], 'expiresAt', ARGV[8])
redis.call('HINCRBY', KEYS[2], 'version', 1)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[9])
redis.call('ZADD', ARGV[10] .. redis.call('HGET', KEYS[2], 'owner'), ARGV[8], ARGV[9])
redis.call('DEL', KEYS[1])
return 1`

// KEYS: lease, meta, state, index. ARGV: id, owner index prefix. Refused while a generation holds it.
const DELETE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local owner = redis.call('HGET', KEYS[2], 'owner')
if owner then redis.call('ZREM', ARGV[2] .. owner, ARGV[1]) end
redis.call('ZREM', KEYS[4], ARGV[1])
return redis.call('DEL', KEYS[2], KEYS[3])`

// KEYS: meta. ARGV: record JSON. A record never resurrects a session that expired or was deleted.
const PUT_CHAT = `if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'chat', ARGV[1]) return 1 end return 0`

export interface RedisSessionStoreOptions {
  url: string
  ttlSeconds: number
  leaseMs: number
  manifestOf: (model: string) => Manifest | undefined
  log: FastifyBaseLogger
}

export class RedisSessionStore implements SessionStore {
  readonly residentCount = 0
  readonly residentBytes = 0
  private readonly redis: Redis
  private readonly leases: RedisLeases
  private lastError: string | null = null

  constructor (private readonly options: RedisSessionStoreOptions) {
    this.redis = new Redis(options.url, {
      // Fail fast while Redis is away (503 now) instead of queueing requests behind a reconnect.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: 5000,
      connectTimeout: 5000,
      retryStrategy: (times) => Math.min(100 * times, 1000)
    })
    this.redis.on('error', (err: Error) => {
      if (this.lastError !== err.message) options.log.warn({ err: err.message }, 'session store: Redis unreachable')
      this.lastError = err.message
    })
    this.redis.on('ready', () => {
      if (this.lastError !== null) options.log.info('session store: Redis reachable again')
      this.lastError = null
    })
    this.leases = new RedisLeases(this.redis, options.leaseMs)
  }

  async create (model: string, owner: string): Promise<SessionInfo> {
    return await this.insert(model, owner, { position: 0, pending: [], tensors: null })
  }

  async info (id: string): Promise<SessionInfo> {
    const k = this.keysOf(id)
    const [meta, leased] = await this.call(async () => await Promise.all([this.redis.hgetall(k.meta), this.redis.exists(k.lease)]))
    const info = parseMeta(id, meta, leased === 1)
    if (info === null) throw new NotFoundError(`session ${id} not found`, 'session_id')
    return info
  }

  async list (): Promise<SessionInfo[]> {
    const ids = await this.call(async () => {
      await this.redis.zremrangebyscore(INDEX, '-inf', Date.now())
      return await this.redis.zrange(INDEX, 0, -1)
    })
    if (ids.length === 0) return []
    const pipeline = this.redis.pipeline()
    for (const id of ids) pipeline.hgetall(keys(id).meta).exists(keys(id).lease)
    const replies = await this.call(async () => await pipeline.exec()) ?? []
    const found: SessionInfo[] = []
    ids.forEach((id, i) => {
      const info = parseMeta(id, replies[2 * i]?.[1] as Record<string, string>, replies[2 * i + 1]?.[1] === 1)
      if (info !== null) found.push(info)
    })
    return found
  }

  async count (owner?: string): Promise<number> {
    const index = owner === undefined ? INDEX : OWNER_INDEX + owner
    return await this.call(async () => {
      await this.redis.zremrangebyscore(index, '-inf', Date.now())
      return await this.redis.zcard(index)
    })
  }

  async acquire (id: string): Promise<SessionState> {
    const k = this.keysOf(id)
    await this.takeLease(id)
    try {
      return await this.readState(id)
    } catch (err) {
      await this.leases.drop(k.lease, { inRedis: true })
      throw err
    }
  }

  async release (id: string, state?: SessionState): Promise<void> {
    const k = this.keysOf(id)
    if (state === undefined) { await this.leases.drop(k.lease, { inRedis: true }); return }
    try {
      await this.commit(id, state)
    } catch (err) {
      // Freed here if Redis answers; otherwise it expires by itself within the lease time.
      await this.leases.drop(k.lease, { inRedis: true })
      throw err
    }
    await this.leases.drop(k.lease, { inRedis: false }) // the commit deleted it
  }

  async fork (id: string, owner: string): Promise<SessionInfo> {
    const source = await this.info(id)
    const state = await this.readState(id)
    return await this.insert(source.model, owner, state)
  }

  async exportState (id: string): Promise<Buffer> {
    const info = await this.info(id)
    return await encodeStateAsync(this.manifest(info.model), await this.readState(id), { session_id: id })
  }

  async importState (id: string, buf: Buffer): Promise<SessionInfo> {
    const info = await this.info(id)
    const { state } = decodeState(buf, this.manifest(info.model))
    await this.takeLease(id) // 409 while a generation holds it, as on disk
    await this.release(id, state)
    return await this.info(id)
  }

  async delete (id: string): Promise<void> {
    const k = this.keysOf(id)
    const done = await this.call(async () => await this.redis.eval(DELETE, 4, k.lease, k.meta, k.state, INDEX, id, OWNER_INDEX))
    if (done === 0) throw new BusyError(`session ${id} is generating`, 'session_id')
  }

  async chatTurn (id: string): Promise<ChatTurnRecord | null> {
    const json = await this.call(async () => await this.redis.hget(this.keysOf(id).meta, 'chat'))
    return json === null ? null : parseTurnRecord(json)
  }

  async putChatTurn (id: string, record: ChatTurnRecord): Promise<void> {
    await this.call(async () => await this.redis.eval(PUT_CHAT, 1, this.keysOf(id).meta, JSON.stringify(record)))
  }

  async health (): Promise<StoreHealth> {
    try {
      await this.redis.ping()
      return { kind: 'redis', reachable: true }
    } catch (err) {
      return { kind: 'redis', reachable: false, error: (err as Error).message }
    }
  }

  /** Every write was awaited by the request that made it: nothing is pending here. */
  async flushed (): Promise<void> {}

  async close (): Promise<void> {
    this.leases.close()
    this.redis.disconnect()
  }

  private get ttlMs (): number { return this.options.ttlSeconds * 1000 }

  private keysOf (id: string): ReturnType<typeof keys> {
    if (!SESSION_ID.test(id)) throw new NotFoundError(`session ${id} not found`, 'session_id')
    return keys(id)
  }

  private manifest (model: string): Manifest {
    const m = this.options.manifestOf(model)
    if (m === undefined) throw new NotFoundError(`model ${model} of this session is not loaded`, 'model')
    return m
  }

  /** Runs Redis commands; a failure of Redis itself (not a domain answer) is a 503. */
  private async call<T> (op: () => Promise<T>): Promise<T> {
    try {
      return await op()
    } catch (err) {
      if (err instanceof DomainError) throw err
      throw new UnavailableError(`session store unavailable: Redis did not answer (${(err as Error).message})`)
    }
  }

  /** Takes the session's lease for this process (409 if anyone holds it) and starts renewing it. */
  private async takeLease (id: string): Promise<void> {
    const k = this.keysOf(id)
    if (this.leases.isHeldHere(k.lease)) throw new BusyError(`session ${id} is already generating`, 'session_id')
    const lease = this.leases.newLease(k.lease)
    const expiresAt = Date.now() + this.ttlMs
    const got = await this.call(async () => await this.redis.eval(ACQUIRE, 4, k.lease, k.meta, k.state, INDEX, lease.token, this.leases.leaseMs, this.ttlMs, expiresAt, id, OWNER_INDEX))
    if (got === -1) throw new NotFoundError(`session ${id} not found`, 'session_id')
    if (got === 0) throw new BusyError(`session ${id} is already generating`, 'session_id')
    this.leases.hold(lease)
  }

  private async readState (id: string): Promise<SessionState> {
    const [buf, model] = await this.call(async () => await Promise.all([this.redis.getBuffer(keys(id).state), this.redis.hget(keys(id).meta, 'model')]))
    if (buf === null || model === null) throw new NotFoundError(`session ${id} not found`, 'session_id')
    return decodeState(buf, this.manifest(model)).state
  }

  private async insert (model: string, owner: string, state: SessionState): Promise<SessionInfo> {
    const id = `sess_${randomUUID().replaceAll('-', '')}`
    const k = keys(id)
    const now = Date.now()
    const expiresAt = now + this.ttlMs
    const buf = await encodeStateAsync(this.manifest(model), state, { session_id: id, created_at: new Date(now).toISOString(), owner })
    const meta = { model, owner, position: state.position, pending: JSON.stringify(state.pending), stateBytes: stateBytes(state), createdAt: now, lastUsedAt: now, expiresAt, version: 1 }
    await this.call(async () => await this.redis.multi()
      .set(k.state, buf, 'PX', this.ttlMs)
      .hset(k.meta, meta)
      .pexpire(k.meta, this.ttlMs)
      .zadd(INDEX, expiresAt, id)
      .zadd(OWNER_INDEX + owner, expiresAt, id)
      .exec())
    return { id, model, owner, position: state.position, pending: [...state.pending], stateBytes: stateBytes(state), busy: false, resident: false, createdAt: now, lastUsedAt: now, expiresAt }
  }

  /** The write-through of a completed turn, fenced by this process's lease, which it also frees. */
  private async commit (id: string, state: SessionState): Promise<void> {
    const k = keys(id)
    const lease = this.leases.get(k.lease)
    if (lease === undefined) throw new UnavailableError(`session ${id} is not held by this generation`)
    const info = await this.info(id)
    const buf = await encodeStateAsync(this.manifest(info.model), state, { session_id: id, created_at: new Date(info.createdAt).toISOString(), owner: info.owner })
    const now = Date.now()
    const done = await this.call(async () => await this.redis.eval(COMMIT, 4, k.lease, k.meta, k.state, INDEX,
      lease.token, buf, this.ttlMs, state.position, JSON.stringify(state.pending), stateBytes(state), now, now + this.ttlMs, id, OWNER_INDEX))
    if (done === 0) throw new UnavailableError(`session ${id}: its lease expired while generating (another generation may have used it); this turn was not saved`)
    if (done === -1) throw new NotFoundError(`session ${id} expired or was deleted while generating; this turn was not saved`, 'session_id')
  }
}

function parseMeta (id: string, meta: Record<string, string> | undefined, busy: boolean): SessionInfo | null {
  if (meta === undefined || meta.model === undefined) return null
  return {
    id,
    model: meta.model,
    owner: meta.owner,
    position: Number(meta.position),
    pending: JSON.parse(meta.pending) as number[],
    stateBytes: Number(meta.stateBytes),
    busy,
    resident: false,
    createdAt: Number(meta.createdAt),
    lastUsedAt: Number(meta.lastUsedAt),
    expiresAt: Number(meta.expiresAt)
  }
}
