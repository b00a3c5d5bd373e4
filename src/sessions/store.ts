// What the server needs of a session store. Two implementations: DiskSessionStore (one process, the
// data folder; the quick-start default) and RedisSessionStore (shared by every replica, selected by
// --redis-url). Both keep the state in the export format (state-file.ts), write every completed turn
// through before it is reported, and let one generation at a time use a session (409 otherwise).
import type { ChatTurnRecord } from '../chat/turns.ts'
import type { SessionState } from './state-file.ts'

export const SESSION_ID = /^[A-Za-z0-9_-]{1,64}$/

export interface SessionInfo {
  id: string
  model: string
  /** The API key name that created it (src/sessions/ownership.ts). */
  owner: string
  position: number
  pending: number[]
  stateBytes: number
  busy: boolean
  resident: boolean
  createdAt: number
  lastUsedAt: number
  expiresAt: number
}

/** Where the sessions live, for /ready: `reachable` is false while a shared store cannot be used. */
export interface StoreHealth {
  kind: 'disk' | 'redis'
  reachable: boolean
  error?: string
}

export interface SessionStore {
  create (model: string, owner: string): Promise<SessionInfo>
  /** NotFoundError (404) for an unknown or expired id. */
  info (id: string): Promise<SessionInfo>
  list (): Promise<SessionInfo[]>
  /** Sessions held, in all and by one owner (quotas). */
  count (owner?: string): Promise<number>
  /** Takes the session for one generation (BusyError, 409, if it is taken) and hands out its state; release() must follow. */
  acquire (id: string): Promise<SessionState>
  /**
   * Ends a generation: stores the new state (resolving once it is durable; rejecting if it could not
   * be stored) or, without a state, just frees the session (never rejects: a shared lease expires).
   */
  release (id: string, state?: SessionState): Promise<void>
  fork (id: string, owner: string): Promise<SessionInfo>
  exportState (id: string): Promise<Buffer>
  importState (id: string, buf: Buffer): Promise<SessionInfo>
  delete (id: string): Promise<void>
  /** The session's last chat turn (src/chat/turns.ts), null if it has none. */
  chatTurn (id: string): Promise<ChatTurnRecord | null>
  putChatTurn (id: string, record: ChatTurnRecord): Promise<void>
  health (): Promise<StoreHealth>
  /** States kept in this process's memory (metrics). */
  readonly residentCount: number
  readonly residentBytes: number
  /** Resolves when every pending write is durable. */
  flushed (): Promise<void>
  close (): Promise<void>
}
