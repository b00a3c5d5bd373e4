// WebSocket GET /v1/stream: JSON messages, many generations multiplexed by a client-chosen id.
//   → {"type":"generate","id":"a","prompt":"...", "max_tokens":32, ...OpenAI sampling fields}
//   → {"type":"cancel","id":"a"}
//   ← {"type":"token","id":"a","index":0,"text":"...","token_id":42,"logprob":-1.2}
//   ← {"type":"end","id":"a","finish_reason":"length","text":"...","usage":{...}}
//   ← {"type":"error","id":"a"|null,"error":{"message","type","param","code"}}
// A malformed message gets an error event; the socket stays open. A slow reader pauses its
// generations until the socket's buffer drains; a closed socket cancels them, whatever stage they
// are at (each generation's abort signal is armed before its prompt is even tokenized).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Value } from '@sinclair/typebox/value'
import type { WebSocket } from 'ws'
import { BusyError, InvalidError, MalformedError } from '../errors.ts'
import { StreamCancelMessage, StreamGenerateMessage, type StreamGenerateMessageT } from '../generation/schemas.ts'
import type { GenerationHandle } from '../generation/spec.ts'
import { streamMessageSpec } from '../generation/validate.ts'
import { toHttpError } from '../http/errors.ts'

const HIGH_WATER = 1 << 20
const LOW_WATER = 1 << 16

interface Active { abort: AbortController, handle: GenerationHandle | null }

function schemaError (schema: typeof StreamGenerateMessage | typeof StreamCancelMessage, msg: unknown): InvalidError {
  const e = Value.Errors(schema, msg).First()
  const param = e?.path.replace(/^\//, '').replaceAll('/', '.') || null
  return new InvalidError(`${param ?? 'message'}: ${e?.message ?? 'invalid'}`, param)
}

const streamRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { generation } = app.t2r

  app.get('/v1/stream', { websocket: true }, (socket: WebSocket, request) => {
    const active = new Map<string, Active>()
    let paused = false
    let poll: NodeJS.Timeout | null = null

    const send = (event: object): void => {
      if (socket.readyState !== socket.OPEN) return
      socket.send(JSON.stringify(event))
      if (!paused && socket.bufferedAmount > HIGH_WATER) {
        paused = true
        for (const a of active.values()) a.handle?.pause()
        poll = setInterval(() => {
          if (socket.bufferedAmount > LOW_WATER) return
          clearInterval(poll!)
          poll = null
          paused = false
          for (const a of active.values()) a.handle?.resume()
        }, 10)
      }
    }
    const fail = (id: string | null, err: unknown): void => {
      const h = toHttpError(err)
      send({ type: 'error', id, error: { message: h.status === 500 && err instanceof Error ? err.message : h.message, type: h.type, param: h.param, code: h.status } })
    }

    async function start (msg: StreamGenerateMessageT, entry: Active): Promise<void> {
      const spec = streamMessageSpec(msg, generation.resolveModel(msg.model), request.tenant)
      let index = 0
      let promptTokens = 0
      const started = await generation.start(spec, {
        token (t) { send({ type: 'token', id: msg.id, index: index++, text: t.text, token_id: t.id, logprob: t.logprob }) },
        end (result) {
          active.delete(msg.id)
          send({ type: 'end', id: msg.id, finish_reason: result.finishReason === 'eos_token' ? 'stop' : result.finishReason, text: result.text, usage: { prompt_tokens: promptTokens, completion_tokens: result.tokens.length } })
        },
        error (err) { active.delete(msg.id); fail(msg.id, err) }
      }, entry.abort.signal)
      promptTokens = started.promptTokens
      entry.handle = started.handle
      if (paused) started.handle.pause()
    }

    socket.on('message', (data, isBinary) => {
      let msg: unknown
      try {
        if (isBinary) throw new Error('binary frames are not accepted')
        msg = JSON.parse(String(data))
      } catch (err) {
        fail(null, new MalformedError(`malformed message: ${(err as Error).message}`))
        return
      }
      const type = (msg as { type?: unknown })?.type
      const id = typeof (msg as { id?: unknown })?.id === 'string' ? (msg as { id: string }).id : null
      if (type === 'cancel') {
        if (!Value.Check(StreamCancelMessage, msg)) { fail(id, schemaError(StreamCancelMessage, msg)); return }
        active.get(msg.id)?.abort.abort()
        return
      }
      if (type !== 'generate') { fail(id, new InvalidError('type must be "generate" or "cancel"', 'type')); return }
      if (!Value.Check(StreamGenerateMessage, msg)) { fail(id, schemaError(StreamGenerateMessage, msg)); return }
      if (active.has(msg.id)) { fail(msg.id, new BusyError(`a generation with id ${msg.id} is already running`, 'id')); return }
      // Registered before any await: a close from here on aborts it.
      const entry: Active = { abort: new AbortController(), handle: null }
      active.set(msg.id, entry)
      start(msg, entry).catch((err) => {
        if (active.get(msg.id) === entry) active.delete(msg.id)
        if (!entry.abort.signal.aborted) fail(msg.id, err)
        else send({ type: 'end', id: msg.id, finish_reason: 'cancelled', text: '', usage: { prompt_tokens: 0, completion_tokens: 0 } })
      })
    })

    socket.on('close', () => {
      if (poll !== null) clearInterval(poll)
      for (const a of active.values()) a.abort.abort()
      active.clear()
    })
  })
}

export default streamRoutes
