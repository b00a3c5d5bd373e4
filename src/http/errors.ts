// The one place errors become HTTP. Domain errors (src/errors.ts) map by class; Fastify's own
// parsing and schema errors map by code. TGI routes answer {error, error_type}; /v1/* routes answer
// OpenAI's {error: {message, type, param, code}}.
import type { FastifyReply, FastifyRequest } from 'fastify'
import { BusyError, ClientGoneError, DomainError, ForbiddenError, InvalidError, MalformedError, NotFoundError, OverloadedError, QuotaExceededError, RateLimitedError, UnauthorizedError, UnavailableError } from '../errors.ts'

export interface HttpError {
  status: number
  type: string
  message: string
  param: string | null
  headers: Record<string, string>
}

const http = (status: number, type: string, message: string, param: string | null = null, headers: Record<string, string> = {}): HttpError =>
  ({ status, type, message, param, headers })

function fromDomain (e: DomainError): HttpError {
  if (e instanceof ClientGoneError) return http(499, 'cancelled', e.message)
  if (e instanceof NotFoundError) return http(404, 'not_found', e.message, e.param)
  if (e instanceof BusyError) return http(409, 'conflict', e.message, e.param)
  if (e instanceof MalformedError) return http(400, 'invalid_request_error', e.message, e.param)
  if (e instanceof InvalidError) return http(422, 'validation', e.message, e.param)
  if (e instanceof UnauthorizedError) return http(401, 'authentication_error', e.message, e.param, { 'www-authenticate': 'Bearer realm="t2r-serve"' })
  if (e instanceof ForbiddenError) return http(403, 'permission_error', e.message, e.param)
  if (e instanceof QuotaExceededError) return http(429, 'quota_exceeded', e.message, e.param)
  if (e instanceof RateLimitedError) return http(429, 'rate_limit_exceeded', e.message, e.param, { 'retry-after': String(e.retryAfterSeconds) })
  if (e instanceof OverloadedError) return http(429, 'overloaded', e.message, e.param, { 'retry-after': String(e.retryAfterSeconds) })
  if (e instanceof UnavailableError) return http(503, 'unavailable', e.message, e.param, { 'retry-after': String(e.retryAfterSeconds) })
  return http(500, 'internal', 'internal error')
}

interface FastifyLikeError {
  code?: string
  statusCode?: number
  message?: string
  validation?: Array<{ instancePath?: string, params?: Record<string, unknown>, message?: string }>
  validationContext?: string
}

function fromValidation (e: FastifyLikeError): HttpError {
  const v = e.validation?.[0]
  const missing = v?.params?.missingProperty as string | undefined
  const extra = v?.params?.additionalProperty as string | undefined
  const path = (v?.instancePath ?? '').replace(/^\//, '').replaceAll('/', '.')
  const param = [path, missing ?? extra].filter(Boolean).join('.') || null
  const what = extra !== undefined ? `unknown field ${param}` : `${param ?? e.validationContext ?? 'body'} ${v?.message ?? 'is invalid'}`
  return http(422, 'validation', `Input validation error: ${what}`, param)
}

/** Maps anything thrown in a route (or by Fastify's parsing and validation) to a status and body. */
export function toHttpError (err: unknown): HttpError {
  if (err instanceof DomainError) return fromDomain(err)
  const e = err as FastifyLikeError
  if (e.validation !== undefined) return fromValidation(e)
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return http(413, 'payload_too_large', 'request body is too large')
  if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return http(415, 'invalid_request_error', e.message ?? 'unsupported media type')
  if (e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError) {
    return http(400, 'invalid_request_error', `malformed JSON body: ${e.message ?? ''}`)
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return http(e.statusCode, 'invalid_request_error', e.message ?? 'bad request')
  }
  return http(500, 'internal', 'internal error')
}

export function errorBody (url: string, h: HttpError): unknown {
  if (url.startsWith('/v1/')) return { error: { message: h.message, type: h.type, param: h.param, code: h.status } }
  return { error: h.message, error_type: h.type }
}

export function sendError (request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const h = toHttpError(err)
  if (h.status >= 500 && h.status !== 503) request.log.error({ err }, 'request failed')
  return reply.code(h.status).headers(h.headers).send(errorBody(request.url, h))
}
