// A signal that aborts when the client goes away before the response is complete: generations
// cancel on it at any point, even while their prompt is still being tokenized.
import type { FastifyReply } from 'fastify'

export function disconnectSignal (reply: FastifyReply): AbortSignal {
  const abort = new AbortController()
  reply.raw.on('close', () => { if (!reply.raw.writableFinished) abort.abort() })
  return abort.signal
}
