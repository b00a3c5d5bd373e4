// @fastify/cors, registered only when origins are configured (CORS is off by default). It answers
// preflights in its onRequest hook, before authentication: browsers send preflights without the
// Authorization header.
import cors, { type FastifyCorsOptions } from '@fastify/cors'

export const corsOptions = (origins: string[]): FastifyCorsOptions => ({
  origin: origins.includes('*') ? '*' : origins,
  methods: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE'],
  allowedHeaders: ['authorization', 'x-api-key', 'content-type', 'x-request-id'],
  exposedHeaders: ['retry-after', 'content-disposition', 'x-request-id'],
  maxAge: 600
})

export default cors
