// @fastify/under-pressure: while the event loop's mean delay is above the limit every request gets
// 503 with Retry-After (our error shape) instead of waiting in an unresponsive process. No status
// route is exposed: /health is ours (it also answers 503 then).
import underPressure, { type FastifyUnderPressureOptions } from '@fastify/under-pressure'
import { UnavailableError } from '../../errors.ts'

const RETRY_AFTER_SECONDS = 5

export const underPressureOptions = (maxEventLoopDelayMs: number): FastifyUnderPressureOptions => ({
  maxEventLoopDelay: maxEventLoopDelayMs,
  exposeStatusRoute: false,
  pressureHandler: async (_request, _reply, type, value) => {
    throw new UnavailableError(`server is under pressure (${type} ${Math.round(value ?? 0)} ms, limit ${maxEventLoopDelayMs} ms)`, RETRY_AFTER_SECONDS)
  }
})

export default underPressure
