// The disk session store (one process; the default). Each session owns one model's recurrent state.
// In memory with an LRU cap; every state change is written through to the data folder (atomically,
// with async I/O off the event loop) before the change is reported, so a restart, graceful or
// killed, loses no session whose last generation had completed. Idle sessions expire after their TTL.
import { randomUUID } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { LOCAL_OWNER } from '../auth/tenant.ts'
import { ChatTurnStore } from '../chat/turn-store.ts'
import type { ChatTurnRecord } from '../chat/turns.ts'
import { BusyError, NotFoundError } from '../errors.ts'
import type { Manifest } from '../models/manifest.ts'
import { decodeState, encodeStateAsync, readHeader, stateBytes, type SessionState } from './state-file.ts'
import { SESSION_ID, type SessionInfo, type SessionStore, type StoreHealth } from './store.ts'

interface Entry {
  info: SessionInfo
  state: SessionState | null // null while spilled to disk
  /** The last write of this session's file: writes of one session never overtake each other. */
  writing: Promise<void>
}

export interface DiskSessionStoreOptions {
  dir: string
  /** Where the sessions' chat turn records live (chat/turn-store.ts). */
  chatTurnsDir: string
  ttlSeconds: number
  maxResident: number
  manifestOf: (model: string) => Manifest | undefined
}

export class DiskSessionStore implements SessionStore {
  private readonly entries = new Map<string, Entry>()
  private readonly resident = new Map<string, true>() // LRU order: oldest first
  private readonly timer: NodeJS.Timeout
  private readonly turns: ChatTurnStore

  constructor (private readonly options: DiskSessionStoreOptions) {
    mkdirSync(options.dir, { recursive: true })
    this.indexDisk()
    this.turns = new ChatTurnStore(options.chatTurnsDir, (id) => this.entries.has(id))
    this.timer = setInterval(() => { this.expire() }, 1000)
    this.timer.unref()
  }

  get residentCount (): number { return this.resident.size }
  get residentBytes (): number {
    let n = 0
    for (const id of this.resident.keys()) n += this.entries.get(id)?.info.stateBytes ?? 0
    return n
  }

  async create (model: string, owner: string): Promise<SessionInfo> {
    const id = `sess_${randomUUID().replaceAll('-', '')}`
    const now = Date.now()
    const info: SessionInfo = { id, model, owner, position: 0, pending: [], stateBytes: 0, busy: false, resident: true, createdAt: now, lastUsedAt: now, expiresAt: now + this.options.ttlSeconds * 1000 }
    this.entries.set(id, { info, state: { position: 0, pending: [], tensors: null }, writing: Promise.resolve() })
    this.touch(id)
    await this.persist(id)
    return this.infoNow(id)
  }

  // Async for the interface, but answered without awaiting anything: a quota check and the create
  // that follows it run without another request in between (src/sessions/ownership.ts).
  async info (id: string): Promise<SessionInfo> { return this.infoNow(id) }

  async list (): Promise<SessionInfo[]> {
    return [...this.entries.values()].map((e) => ({ ...e.info }))
  }

  async count (owner?: string): Promise<number> {
    if (owner === undefined) return this.entries.size
    let n = 0
    for (const e of this.entries.values()) if (e.info.owner === owner) n++
    return n
  }

  async health (): Promise<StoreHealth> { return { kind: 'disk', reachable: true } }

  /** Marks the session busy and hands out its state; release() must follow. */
  async acquire (id: string): Promise<SessionState> {
    const e = this.entry(id)
    if (e.info.busy) throw new BusyError(`session ${id} is already generating`, 'session_id')
    e.info.busy = true
    try {
      const state = await this.load(id)
      return { position: state.position, pending: [...state.pending], tensors: state.tensors }
    } catch (err) {
      e.info.busy = false
      throw err
    }
  }

  /** Ends a generation: stores the new state (resolving once it is on disk) or just frees the lock. */
  async release (id: string, state?: SessionState): Promise<void> {
    const e = this.entries.get(id)
    if (e === undefined) return // deleted while generating
    if (state !== undefined) await this.replace(id, state)
    e.info.busy = false
  }

  async replace (id: string, state: SessionState): Promise<void> {
    const e = this.entry(id)
    e.state = state
    e.info.position = state.position
    e.info.pending = [...state.pending]
    e.info.stateBytes = stateBytes(state)
    e.info.lastUsedAt = Date.now()
    e.info.expiresAt = e.info.lastUsedAt + this.options.ttlSeconds * 1000
    this.touch(id)
    await this.persist(id)
  }

  async fork (id: string, owner: string): Promise<SessionInfo> {
    const source = this.entry(id)
    const state = await this.load(id)
    const copy = await this.create(source.info.model, owner)
    await this.replace(copy.id, { position: state.position, pending: [...state.pending], tensors: state.tensors?.map((t) => t.slice()) ?? null })
    return this.infoNow(copy.id)
  }

  async exportState (id: string): Promise<Buffer> {
    const e = this.entry(id)
    return await encodeStateAsync(this.manifest(e.info.model), await this.load(id), { session_id: id })
  }

  async importState (id: string, buf: Buffer): Promise<SessionInfo> {
    const e = this.entry(id)
    if (e.info.busy) throw new BusyError(`session ${id} is generating`, 'session_id')
    const { state } = decodeState(buf, this.manifest(e.info.model))
    await this.replace(id, state)
    return this.infoNow(id)
  }

  async delete (id: string): Promise<void> {
    const e = this.entry(id)
    if (e.info.busy) throw new BusyError(`session ${id} is generating`, 'session_id')
    this.drop(id)
    await e.writing
    await rm(this.file(id), { force: true })
  }

  async chatTurn (id: string): Promise<ChatTurnRecord | null> { return await this.turns.get(id) }
  async putChatTurn (id: string, record: ChatTurnRecord): Promise<void> { await this.turns.put(id, record) }

  async close (): Promise<void> {
    clearInterval(this.timer)
  }

  /** Resolves when every pending write has reached the disk. */
  async flushed (): Promise<void> {
    await Promise.all([...this.entries.values()].map(async (e) => { await e.writing }))
  }

  private infoNow (id: string): SessionInfo {
    return { ...this.entry(id).info }
  }

  private entry (id: string): Entry {
    const e = SESSION_ID.test(id) ? this.entries.get(id) : undefined
    if (e === undefined) throw new NotFoundError(`session ${id} not found`, 'session_id')
    return e
  }

  private manifest (model: string): Manifest {
    const m = this.options.manifestOf(model)
    if (m === undefined) throw new NotFoundError(`model ${model} of this session is not loaded`, 'model')
    return m
  }

  private file (id: string): string { return join(this.options.dir, `${id}.t2rs`) }

  /** Queues an atomic write of the session's current state after its previous write. */
  private async persist (id: string): Promise<void> {
    const e = this.entries.get(id)!
    // Encoded now (the state may be replaced before this write runs); hashed off the event loop.
    const encoding = encodeStateAsync(this.manifest(e.info.model), e.state!, { session_id: id, created_at: new Date(e.info.createdAt).toISOString(), owner: e.info.owner })
    encoding.catch(() => {}) // handled where the write awaits it; not an unhandled rejection meanwhile
    const write = async (): Promise<void> => {
      const buf = await encoding
      if (this.entries.get(id) !== e) return // deleted meanwhile: no file may reappear
      const tmp = `${this.file(id)}.tmp`
      await writeFile(tmp, buf)
      await rename(tmp, this.file(id))
    }
    e.writing = e.writing.then(write, write)
    await e.writing
  }

  private async load (id: string): Promise<SessionState> {
    const e = this.entry(id)
    if (e.state === null) {
      await e.writing
      const state = decodeState(await readFile(this.file(id)), this.manifest(e.info.model)).state
      e.state ??= state
    }
    this.touch(id)
    return e.state
  }

  private touch (id: string): void {
    const e = this.entries.get(id)!
    e.info.resident = true
    this.resident.delete(id)
    this.resident.set(id, true)
    for (const old of this.resident.keys()) {
      if (this.resident.size <= this.options.maxResident) break
      const victim = this.entries.get(old)!
      if (victim.info.busy || old === id) continue
      victim.state = null // on disk once its queued write lands (load() waits for it)
      victim.info.resident = false
      this.resident.delete(old)
    }
  }

  private drop (id: string): void {
    this.entries.delete(id)
    this.resident.delete(id)
  }

  private expire (): void {
    const now = Date.now()
    for (const [id, e] of this.entries) {
      if (!e.info.busy && e.info.expiresAt <= now) {
        this.drop(id)
        void e.writing.then(async () => { await rm(this.file(id), { force: true }) })
      }
    }
  }

  /** Sessions written by an earlier run are known at start and loaded from disk on first use. */
  private indexDisk (): void {
    for (const name of readdirSync(this.options.dir)) {
      if (name.endsWith('.tmp')) { rmSync(join(this.options.dir, name), { force: true }); continue }
      if (!name.endsWith('.t2rs')) continue
      const id = name.slice(0, -5)
      try {
        const { header } = readHeader(readFileSync(join(this.options.dir, name)))
        const now = Date.now()
        const created = header.created_at !== undefined ? Date.parse(header.created_at) : now
        const bytes = header.tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1) * 4, 0)
        // Files written before sessions had owners belong to the local tenant (only admins see them once keys are on).
        const owner = typeof header.owner === 'string' ? header.owner : LOCAL_OWNER
        this.entries.set(id, {
          info: { id, model: header.model, owner, position: header.position, pending: header.pending, stateBytes: bytes, busy: false, resident: false, createdAt: created, lastUsedAt: now, expiresAt: now + this.options.ttlSeconds * 1000 },
          state: null,
          writing: Promise.resolve()
        })
      } catch {
        // An unreadable file is left for an operator; it is not a session.
      }
    }
  }
}
