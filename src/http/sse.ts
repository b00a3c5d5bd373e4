// Server-sent events over the raw response, for generation streams and job progress. With a
// generation attached there is backpressure: when the socket's buffer is full the generation is
// paused until it drains, so a slow reader never makes the server buffer a whole generation; a
// client that goes away cancels it.
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { GenerationHandle } from '../engine/engine.ts'

export class SseStream {
  private handle: GenerationHandle | null = null
  private paused = false
  closed = false
  private readonly onClose: Array<() => void> = []

  constructor (request: FastifyRequest, private readonly reply: FastifyReply) {
    reply.hijack()
    const res = reply.raw
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      'x-request-id': String(request.id)
    })
    res.flushHeaders()
    res.on('close', () => {
      this.closed = true
      this.handle?.cancel()
      for (const f of this.onClose) f()
    })
    res.on('drain', () => {
      if (this.paused) { this.paused = false; this.handle?.resume() }
    })
  }

  attach (handle: GenerationHandle): void {
    this.handle = handle
    if (this.closed) handle.cancel()
  }

  whenClosed (f: () => void): void { this.onClose.push(f) }

  send (data: unknown, event?: string): void {
    if (this.closed) return
    const frame = (event !== undefined ? `event: ${event}\n` : '') + `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`
    const ok = this.reply.raw.write(frame)
    if (!ok && !this.paused && this.handle !== null) { this.paused = true; this.handle.pause() }
  }

  end (): void {
    if (!this.closed) this.reply.raw.end()
  }
}
