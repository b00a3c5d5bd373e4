// Where a request carries its API key, and keeping keys out of the logs. Keys travel in
// `Authorization: Bearer <key>` (as vLLM and llama.cpp take them) or `x-api-key`. A browser cannot
// set headers on a WebSocket, so a WebSocket upgrade may also carry `?api_key=`; anywhere else a
// key in the URL is refused, because URLs end up in logs, proxies and browser history.
import type { FastifyRequest } from 'fastify'

const BEARER = /^Bearer\s+(\S+)\s*$/i
const SECRET_PARAMS = /([?&](?:api[_-]?key|key|token|access_token)=)[^&#]*/gi

export type Presented =
  | { key: string, where: 'header' | 'query' }
  | { key: null, where: 'none' | 'query' }

/** The key a request presents; `where: 'query'` without a key is a key in the URL of a non-WebSocket request. */
export function presentedKey (request: FastifyRequest): Presented {
  const auth = request.headers.authorization
  const bearer = typeof auth === 'string' ? BEARER.exec(auth)?.[1] : undefined
  if (bearer !== undefined) return { key: bearer, where: 'header' }
  const header = request.headers['x-api-key']
  if (typeof header === 'string' && header !== '') return { key: header, where: 'header' }
  const inUrl = new URLSearchParams(request.url.split('?')[1] ?? '').get('api_key')
  if (inUrl === null || inUrl === '') return { key: null, where: 'none' }
  return request.ws ? { key: inUrl, where: 'query' } : { key: null, where: 'query' }
}

/** The URL as it may be logged: values of `api_key`, `key`, `token` and the like replaced. */
export const redactUrl = (url: string): string => url.replace(SECRET_PARAMS, '$1[redacted]')
