// The server's pino options: credentials never reach the log. Headers that carry them are
// redacted, and so are secrets in logged URLs (`?api_key=`, `?token=`, ...): a key sent in a query
// string is refused (except on WebSocket upgrades), but the URL it came in is still logged.
import type { FastifyRequest, FastifyServerOptions } from 'fastify'
import type { DestinationStream } from 'pino'
import { redactUrl } from '../auth/credentials.ts'

export function loggerOptions (level: string, stream?: DestinationStream): FastifyServerOptions['logger'] {
  return {
    level,
    ...(stream !== undefined ? { stream } : {}),
    redact: { paths: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-api-key"]', 'req.headers["proxy-authorization"]'], censor: '[redacted]' },
    serializers: {
      // Fastify's default request serializer, with the URL redacted.
      req: (req: FastifyRequest) => ({
        method: req.method,
        url: redactUrl(req.url),
        host: req.host,
        remoteAddress: req.ip,
        remotePort: req.socket?.remotePort
      })
    }
  }
}
