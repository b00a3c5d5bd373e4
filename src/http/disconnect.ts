// A signal that aborts when the client goes away before the response is written: non-streaming
// generations cancel on it, so a client that hangs up stops its work within one decode step.
import type { FastifyReply } from 'fastify'

export function disconnectSignal (reply: FastifyReply): AbortSignal {
  const abort = new AbortController()
  reply.raw.on('close', () => { if (!reply.raw.writableFinished) abort.abort() })
  return abort.signal
}
