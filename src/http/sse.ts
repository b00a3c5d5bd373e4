// Server-sent events over the raw response, for generation streams and job progress. The stream
// opens (status 200 and headers) only once the work has started, so everything that refuses a
// request before that (validation, 404, 409, 429, 503) is an ordinary HTTP status. With a
// generation attached there is backpressure: when the socket's buffer is full the generation is
// paused until it drains, so a slow reader never makes the server buffer a whole generation; a
// client that goes away cancels it.
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { GenerationHandle } from '../generation/spec.ts'

export class SseStream {
  private handle: GenerationHandle | null = null
  private paused = false
  private opened = false
  private readonly queued: string[] = []
  closed = false
  private readonly onClose: Array<() => void> = []

  constructor (private readonly request: FastifyRequest, private readonly reply: FastifyReply) {
    reply.raw.on('close', () => {
      this.closed = true
      this.handle?.cancel()
      for (const f of this.onClose) f()
    })
  }

  /** Sends the headers (and anything sent before), attaching the generation for backpressure. */
  open (handle: GenerationHandle | null = null): void {
    this.handle = handle
    if (this.closed) { handle?.cancel(); return }
    this.reply.hijack()
    const res = this.reply.raw
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      'x-request-id': String(this.request.id)
    })
    res.flushHeaders()
    res.on('drain', () => {
      if (this.paused) { this.paused = false; this.handle?.resume() }
    })
    this.opened = true
    for (const frame of this.queued.splice(0)) this.write(frame)
  }

  whenClosed (f: () => void): void { this.onClose.push(f) }

  send (data: unknown, event?: string): void {
    if (this.closed) return
    const frame = (event !== undefined ? `event: ${event}\n` : '') + `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`
    if (this.opened) this.write(frame)
    else this.queued.push(frame)
  }

  /** Ends an OpenAI-shaped stream that failed after it opened: one error frame, then the end. */
  failOpenAi (message: string): void {
    this.send({ error: { message, type: 'generation_error', param: null, code: 500 } })
    this.end()
  }

  end (): void {
    if (this.closed) return
    if (!this.opened) this.open()
    this.reply.raw.end()
  }

  private write (frame: string): void {
    const ok = this.reply.raw.write(frame)
    if (!ok && !this.paused && this.handle !== null) { this.paused = true; this.handle.pause() }
  }
}
