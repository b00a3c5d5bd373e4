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
export async function owned (sessions: SessionStore, id: string, tenant: Tenant): Promise<SessionInfo> {
  const info = await sessions.info(id)
  if (!visibleTo(tenant, info)) throw new NotFoundError(`session ${id} not found`, 'session_id')
  return info
}

/** The sessions a tenant may see: its own, or every one for an admin. */
export async function visibleSessions (sessions: SessionStore, tenant: Tenant): Promise<SessionInfo[]> {
  return (await sessions.list()).filter((s) => visibleTo(tenant, s))
}

/**
 * Refuses (429) a new session beyond the key's quota or the server's. Call it right before the
 * store creates the session. On disk, count() answers without I/O and create() registers the
 * session before its first await, so concurrent creates cannot both take the last slot (a fork
 * creates its copy after loading the source's state, so concurrent forks of spilled sessions may
 * overshoot by the number in flight). On Redis, creates on different replicas may overshoot by the
 * number in flight at once.
 */
export async function admitSession (sessions: SessionStore, tenant: Tenant, limits: Pick<AccessConfig, 'maxSessions' | 'maxSessionsPerKey'>): Promise<void> {
  const all = await sessions.count()
  if (all >= limits.maxSessions) {
    throw new QuotaExceededError(`the server holds ${all} sessions, its limit; delete sessions or wait for idle ones to expire`)
  }
  const mine = await sessions.count(tenant.key)
  if (mine >= limits.maxSessionsPerKey) {
    throw new QuotaExceededError(`key ${tenant.key} holds ${mine} sessions, its limit of ${limits.maxSessionsPerKey}; delete sessions or wait for idle ones to expire`)
  }
}
