// Sessions belong to the key that created them. This is the one place that decides who may see a
// session: every session route and every generation that names a session_id goes through owned().
// Another key's session is answered exactly like a missing one (404), so ids cannot be probed;
// an admin key sees every session.
import type { Tenant } from '../auth/tenant.ts'
import type { AccessConfig } from '../config.ts'
import { NotFoundError, QuotaExceededError } from '../errors.ts'
import type { SessionInfo, SessionStore } from './store.ts'

const visibleTo = (tenant: Tenant, info: SessionInfo): boolean => tenant.admin || info.owner === tenant.key

/** The session, if this tenant may use it; otherwise the same 404 as for an unknown id. */
export function owned (sessions: SessionStore, id: string, tenant: Tenant): SessionInfo {
  const info = sessions.info(id)
  if (!visibleTo(tenant, info)) throw new NotFoundError(`session ${id} not found`, 'session_id')
  return info
}

/** The sessions a tenant may see: its own, or every one for an admin. */
export function visibleSessions (sessions: SessionStore, tenant: Tenant): SessionInfo[] {
  return sessions.list().filter((s) => visibleTo(tenant, s))
}

/**
 * Refuses (429) a new session beyond the key's quota or the server's. Call it right before the
 * store creates the session: create() registers it before its first await, so concurrent creates
 * cannot both take the last slot (a fork creates its copy after loading the source's state, so
 * concurrent forks of spilled sessions may overshoot by the number in flight).
 */
export function admitSession (sessions: SessionStore, tenant: Tenant, limits: Pick<AccessConfig, 'maxSessions' | 'maxSessionsPerKey'>): void {
  if (sessions.size >= limits.maxSessions) {
    throw new QuotaExceededError(`the server holds ${sessions.size} sessions, its limit; delete sessions or wait for idle ones to expire`)
  }
  const mine = sessions.list().filter((s) => s.owner === tenant.key).length
  if (mine >= limits.maxSessionsPerKey) {
    throw new QuotaExceededError(`key ${tenant.key} holds ${mine} sessions, its limit of ${limits.maxSessionsPerKey}; delete sessions or wait for idle ones to expire`)
  }
}
