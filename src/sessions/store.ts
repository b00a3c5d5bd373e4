// Sessions: each owns one model's recurrent state. In memory with an LRU cap; every state change is
// written through to the data folder (atomically), so a restart, graceful or killed, loses no
// session whose last generation had completed. Idle sessions expire after their TTL.
import { randomUUID } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Manifest } from '../models/manifest.ts'
import { decodeState, encodeState, readHeader, stateBytes, type SessionState } from './state-file.ts'

export const SESSION_ID = /^[A-Za-z0-9_-]{1,64}$/

export interface SessionInfo {
  id: string
  model: string
  position: number
  pending: number[]
  stateBytes: number
  busy: boolean
  resident: boolean
  createdAt: number
  lastUsedAt: number
  expiresAt: number
}

interface Entry {
  info: SessionInfo
  state: SessionState | null  // null while spilled to disk
}

export class SessionBusyError extends Error {}
export class SessionNotFoundError extends Error {}

export interface SessionStoreOptions {
  dir: string
  ttlSeconds: number
  maxResident: number
  manifestOf: (model: string) => Manifest | undefined
  onChange?: (store: SessionStore) => void
}

export class SessionStore {
  private readonly entries = new Map<string, Entry>()
  private readonly resident = new Map<string, true>() // LRU order: oldest first
  private readonly timer: NodeJS.Timeout

  constructor (private readonly options: SessionStoreOptions) {
    mkdirSync(options.dir, { recursive: true })
    this.indexDisk()
    this.timer = setInterval(() => { this.expire() }, 1000)
    this.timer.unref()
  }

  get size (): number { return this.entries.size }
  get residentCount (): number { return this.resident.size }
  get residentBytes (): number {
    let n = 0
    for (const id of this.resident.keys()) n += this.entries.get(id)?.info.stateBytes ?? 0
    return n
  }

  create (model: string, ttlSeconds = this.options.ttlSeconds): SessionInfo {
    const id = `sess_${randomUUID().replaceAll('-', '')}`
    const now = Date.now()
    const info: SessionInfo = { id, model, position: 0, pending: [], stateBytes: 0, busy: false, resident: true, createdAt: now, lastUsedAt: now, expiresAt: now + ttlSeconds * 1000 }
    this.entries.set(id, { info, state: { position: 0, pending: [], tensors: null } })
    this.persist(id)
    this.touch(id)
    return { ...info }
  }

  info (id: string): SessionInfo {
    return { ...this.entry(id).info }
  }

  list (): SessionInfo[] {
    return [...this.entries.values()].map((e) => ({ ...e.info }))
  }

  /** Marks the session busy and hands out its state; release() must follow. */
  acquire (id: string): SessionState {
    const e = this.entry(id)
    if (e.info.busy) throw new SessionBusyError(`session ${id} is already generating`)
    const state = this.load(id)
    e.info.busy = true
    return { position: state.position, pending: [...state.pending], tensors: state.tensors }
  }

  /** Ends a generation: stores the new state (written through to disk) or just frees the lock. */
  release (id: string, state?: SessionState): void {
    const e = this.entries.get(id)
    if (e === undefined) return // deleted while generating
    e.info.busy = false
    if (state !== undefined) this.replace(id, state)
  }

  replace (id: string, state: SessionState): void {
    const e = this.entry(id)
    e.state = state
    e.info.position = state.position
    e.info.pending = [...state.pending]
    e.info.stateBytes = stateBytes(state)
    e.info.lastUsedAt = Date.now()
    e.info.expiresAt = e.info.lastUsedAt + this.options.ttlSeconds * 1000
    this.persist(id)
    this.touch(id)
  }

  fork (id: string): SessionInfo {
    const source = this.entry(id)
    const state = this.load(id)
    const copy = this.create(source.info.model)
    this.replace(copy.id, { position: state.position, pending: [...state.pending], tensors: state.tensors?.map((t) => t.slice()) ?? null })
    return this.info(copy.id)
  }

  exportState (id: string): Buffer {
    const e = this.entry(id)
    return encodeState(this.manifest(e.info.model), this.load(id), { session_id: id })
  }

  importState (id: string, buf: Buffer): SessionInfo {
    const e = this.entry(id)
    if (e.info.busy) throw new SessionBusyError(`session ${id} is generating`)
    const { state } = decodeState(buf, this.manifest(e.info.model))
    this.replace(id, state)
    return this.info(id)
  }

  delete (id: string): void {
    this.entry(id)
    this.entries.delete(id)
    this.resident.delete(id)
    rmSync(this.file(id), { force: true })
    this.options.onChange?.(this)
  }

  close (): void {
    clearInterval(this.timer)
  }

  private entry (id: string): Entry {
    const e = SESSION_ID.test(id) ? this.entries.get(id) : undefined
    if (e === undefined) throw new SessionNotFoundError(`session ${id} not found`)
    return e
  }

  private manifest (model: string): Manifest {
    const m = this.options.manifestOf(model)
    if (m === undefined) throw new SessionNotFoundError(`model ${model} of this session is not loaded`)
    return m
  }

  private file (id: string): string { return join(this.options.dir, `${id}.t2rs`) }

  private persist (id: string): void {
    const e = this.entries.get(id)!
    const buf = encodeState(this.manifest(e.info.model), e.state!, { session_id: id, created_at: new Date(e.info.createdAt).toISOString() })
    const tmp = `${this.file(id)}.tmp`
    writeFileSync(tmp, buf)
    renameSync(tmp, this.file(id))
  }

  private load (id: string): SessionState {
    const e = this.entry(id)
    if (e.state === null) {
      e.state = decodeState(readFileSync(this.file(id)), this.manifest(e.info.model)).state
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
      victim.state = null // already on disk: write-through
      victim.info.resident = false
      this.resident.delete(old)
    }
    this.options.onChange?.(this)
  }

  private expire (): void {
    const now = Date.now()
    for (const [id, e] of this.entries) {
      if (!e.info.busy && e.info.expiresAt <= now) this.delete(id)
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
        this.entries.set(id, {
          info: { id, model: header.model, position: header.position, pending: header.pending, stateBytes: bytes, busy: false, resident: false, createdAt: created, lastUsedAt: now, expiresAt: now + this.options.ttlSeconds * 1000 },
          state: null
        })
      } catch {
        // An unreadable file is left for an operator; it is not a session.
      }
    }
  }
}
