// Who may call, from where, and how often — one onRequest hook, before any body is read:
//   1. a WebSocket upgrade from a browser Origin not on the allow-list: 403;
//   2. the API key (Authorization: Bearer, x-api-key; ?api_key= on WebSocket upgrades only) names
//      the tenant, request.tenant; without keys configured every caller is the local tenant;
//   3. the rate limit, per key (per address without a valid key, so guessing keys is limited too);
//   4. no key or an unknown one: 401.
// /health, /ready and /metrics stay open for probes and scrapers. Registered with the external
// wrappers it depends on: under-pressure, CORS (only when origins are configured), rate-limit.
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { presentedKey } from '../auth/credentials.ts'
import { KeyRing } from '../auth/keys.ts'
import { originAllowed } from '../auth/origins.ts'
import { LOCAL_TENANT, type Tenant } from '../auth/tenant.ts'
import type { AccessConfig } from '../config.ts'
import { ForbiddenError, RateLimitedError, UnauthorizedError } from '../errors.ts'
import cors, { corsOptions } from './external/cors.ts'
import rateLimit, { rateLimitOptions } from './external/rate-limit.ts'
import underPressure, { underPressureOptions } from './external/under-pressure.ts'

const PUBLIC_ROUTES = new Set(['/health', '/ready', '/metrics'])

function authenticate (keys: KeyRing, request: FastifyRequest): Tenant | UnauthorizedError {
  if (!keys.enabled) return LOCAL_TENANT
  const presented = presentedKey(request)
  if (presented.key === null) {
    return new UnauthorizedError(presented.where === 'query'
      ? 'API keys are not accepted in the URL (only on WebSocket upgrades); send Authorization: Bearer <key>'
      : 'missing API key: send Authorization: Bearer <key>')
  }
  return keys.identify(presented.key) ?? new UnauthorizedError('invalid API key')
}

export default fp<{ access: AccessConfig }>(async (app, { access }) => {
  if (access.maxEventLoopDelayMs > 0) await app.register(underPressure, underPressureOptions(access.maxEventLoopDelayMs))
  if (access.corsOrigins.length > 0) await app.register(cors, corsOptions(access.corsOrigins))
  await app.register(rateLimit, rateLimitOptions)

  const keys = new KeyRing(access.keys)
  const limit = access.rateLimitPerMinute === 0
    ? null
    : app.createRateLimit({
      max: access.rateLimitPerMinute,
      timeWindow: 60_000,
      keyGenerator: (request) => {
        const tenant = request.tenant as Tenant | null // null: no valid key
        return keys.enabled && tenant !== null ? `key:${tenant.key}` : `ip:${request.ip}`
      }
    })

  if (keys.enabled) {
    app.log.info({ keys: access.keys.length, admin: access.keys.filter((k) => k.admin).length }, 'API keys configured: every route but /health, /ready and /metrics needs one')
  } else {
    app.log.warn('no API keys configured: authentication is off and the server listens on loopback only (set --api-keys-file or T2R_API_KEYS to serve other hosts)')
  }

  // null until the hook sets it; public routes never read it.
  app.decorateRequest('tenant', null as unknown as Tenant)

  app.addHook('onRequest', async (request) => {
    if (request.ws && !originAllowed(access.wsOrigins, request.headers.origin)) {
      throw new ForbiddenError(`WebSocket connections from origin ${request.headers.origin} are not allowed`)
    }
    if (PUBLIC_ROUTES.has(request.routeOptions.url ?? '')) return
    const tenant = authenticate(keys, request)
    if (!(tenant instanceof UnauthorizedError)) request.tenant = tenant
    if (limit !== null) {
      const verdict = await limit(request)
      if (!verdict.isAllowed && verdict.isExceeded) {
        throw new RateLimitedError(`rate limit of ${verdict.max} requests per minute exceeded`, verdict.ttlInSeconds)
      }
    }
    if (tenant instanceof UnauthorizedError) throw tenant
  })
}, { name: 't2r-access', dependencies: ['@fastify/websocket'] })
