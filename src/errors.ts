// HTTP errors. TGI routes answer {error, error_type}; /v1/* routes answer OpenAI's
// {error: {message, type, param, code}} (DESIGN.md §4).
import type { FastifyReply, FastifyRequest } from 'fastify'

export class HttpError extends Error {
  constructor (
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {}
  ) {
    super(message)
  }
}

export const badRequest = (message: string, param: string | null = null): HttpError => new HttpError(400, message, 'invalid_request_error', param)
export const unprocessable = (message: string, param: string | null = null): HttpError => new HttpError(422, message, 'validation', param)
export const notFound = (message: string, param: string | null = null): HttpError => new HttpError(404, message, 'not_found', param)
export const conflict = (message: string, param: string | null = null): HttpError => new HttpError(409, message, 'conflict', param)
export const overloaded = (message: string, retryAfterSeconds = 1): HttpError =>
  new HttpError(429, message, 'overloaded', null, { 'retry-after': String(retryAfterSeconds) })
export const unavailable = (message: string): HttpError => new HttpError(503, message, 'unavailable', null, { 'retry-after': '5' })

export function isOpenAiRoute (url: string): boolean {
  return url.startsWith('/v1/')
}

export function errorBody (url: string, status: number, message: string, type: string, param: string | null): unknown {
  if (isOpenAiRoute(url)) return { error: { message, type, param, code: status } }
  return { error: message, error_type: type }
}

/** Maps anything thrown in a route (or by Fastify's parsing and validation) to a status and body. */
export function toHttpError (err: unknown): HttpError {
  if (err instanceof HttpError) return err
  const e = err as { code?: string, statusCode?: number, message?: string, validation?: Array<{ instancePath?: string, params?: Record<string, unknown>, message?: string }> }
  if (e.validation !== undefined) {
    const v = e.validation[0]
    const missing = v?.params?.missingProperty as string | undefined
    const extra = v?.params?.additionalProperty as string | undefined
    const path = (v?.instancePath ?? '').replace(/^\//, '').replaceAll('/', '.')
    const param = [path, missing ?? extra].filter(Boolean).join('.') || null
    const what = extra !== undefined ? `unknown field ${param}` : `${param ?? 'body'} ${v?.message ?? 'is invalid'}`
    return unprocessable(`Input validation error: ${what}`, param)
  }
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new HttpError(413, 'request body is too large', 'payload_too_large')
  if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return new HttpError(415, e.message ?? 'unsupported media type', 'invalid_request_error')
  if (e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError) {
    return badRequest(`malformed JSON body: ${e.message ?? ''}`)
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new HttpError(e.statusCode, e.message ?? 'bad request', 'invalid_request_error')
  }
  return new HttpError(500, 'internal error', 'internal')
}

export function sendError (request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const h = toHttpError(err)
  if (h.status >= 500 && h.status !== 503) request.log.error({ err }, 'request failed')
  return reply.code(h.status).headers(h.headers).send(errorBody(request.url, h.status, h.message, h.type, h.param))
}
