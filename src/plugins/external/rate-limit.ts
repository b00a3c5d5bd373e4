// @fastify/rate-limit without its global route hooks: the access plugin asks a limiter made with
// createRateLimit() once it knows the caller's key, so requests count per key (per address
// without a valid key) and a refusal is our 429 with Retry-After.
import rateLimit, { type RateLimitPluginOptions } from '@fastify/rate-limit'

export const rateLimitOptions: RateLimitPluginOptions = { global: false }

export default rateLimit
