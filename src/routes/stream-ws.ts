// WebSocket GET /v1/stream: JSON messages, many generations multiplexed by a client-chosen id.
//   → {"type":"generate","id":"a","prompt":"...", "max_tokens":32, ...OpenAI sampling fields}
//   → {"type":"cancel","id":"a"}
//   ← {"type":"token","id":"a","index":0,"text":"...","token_id":42,"logprob":-1.2}
//   ← {"type":"end","id":"a","finish_reason":"length","text":"...","usage":{...}}
//   ← {"type":"error","id":"a"|null,"error":{"message","type","param"}}
// A malformed message gets an error event; the socket stays open. A slow reader pauses its
// generations until the socket's buffer drains; a closed socket cancels them.
import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import type { FastifyInstance } from 'fastify'
import type { WebSocket } from 'ws'
import type { GenerationHandle } from '../engine/engine.ts'
import { toHttpError } from '../errors.ts'
import { checkTopK, fromOpenAi, OpenAiSampling } from '../generation/params.ts'

const ClientId = Type.String({ minLength: 1, maxLength: 128 })
const GenerateMessage = Type.Object({
  type: Type.Literal('generate'),
  id: ClientId,
  model: Type.Optional(Type.String({ minLength: 1 })),
  prompt: Type.String({ maxLength: 1_000_000 }),
  session_id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' })),
  ...OpenAiSampling
}, { additionalProperties: false })
const CancelMessage = Type.Object({ type: Type.Literal('cancel'), id: ClientId }, { additionalProperties: false })

const HIGH_WATER = 1 << 20
const LOW_WATER = 1 << 16

function firstError (schema: typeof GenerateMessage | typeof CancelMessage, msg: unknown): { message: string, param: string | null } {
  const e = Value.Errors(schema, msg).First()
  const param = e?.path.replace(/^\//, '').replaceAll('/', '.') || null
  return { message: `${param ?? 'message'}: ${e?.message ?? 'invalid'}`, param }
}

export default async function streamRoutes (app: FastifyInstance): Promise<void> {
  const { generation } = app.t2r

  app.get('/v1/stream', { websocket: true }, (socket: WebSocket) => {
    const active = new Map<string, GenerationHandle>()
    let paused = false
    let poll: NodeJS.Timeout | null = null

    const send = (event: object): void => {
      if (socket.readyState !== socket.OPEN) return
      socket.send(JSON.stringify(event))
      if (!paused && socket.bufferedAmount > HIGH_WATER) {
        paused = true
        for (const h of active.values()) h.pause()
        poll = setInterval(() => {
          if (socket.bufferedAmount > LOW_WATER) return
          clearInterval(poll!)
          poll = null
          paused = false
          for (const h of active.values()) h.resume()
        }, 10)
      }
    }
    const fail = (id: string | null, err: unknown): void => {
      const h = toHttpError(err)
      send({ type: 'error', id, error: { message: h.status === 500 && err instanceof Error ? err.message : h.message, type: h.type, param: h.param, code: h.status } })
    }

    async function start (msg: Static<typeof GenerateMessage>): Promise<void> {
      if (active.has(msg.id)) { fail(msg.id, Object.assign(new Error(`a generation with id ${msg.id} is already running`), { statusCode: 409 })); return }
      const model = generation.resolveModel(msg.model)
      const r = fromOpenAi(msg, 16)
      checkTopK(r.params.topK, model.manifest.vocab_size)
      let index = 0
      active.set(msg.id, { cancel () {}, pause () {}, resume () {} }) // reserve the id while tokenizing
      try {
        const started = await generation.start({ model, prompt: msg.prompt, sessionId: msg.session_id ?? null, ...r }, {
          token (t) { send({ type: 'token', id: msg.id, index: index++, text: t.text, token_id: t.id, logprob: t.logprob }) },
          end (result) {
            active.delete(msg.id)
            send({ type: 'end', id: msg.id, finish_reason: result.finishReason === 'eos_token' ? 'stop' : result.finishReason, text: result.text, usage: { prompt_tokens: started.promptTokens, completion_tokens: result.tokens.length } })
          },
          error (err) { active.delete(msg.id); fail(msg.id, err) }
        })
        if (active.has(msg.id)) {
          active.set(msg.id, started.handle)
          if (paused) started.handle.pause()
          if (socket.readyState !== socket.OPEN) started.handle.cancel()
        }
      } catch (err) {
        active.delete(msg.id)
        throw err
      }
    }

    socket.on('message', (data, isBinary) => {
      let msg: unknown
      try {
        if (isBinary) throw new Error('binary frames are not accepted')
        msg = JSON.parse(String(data))
      } catch (err) {
        fail(null, Object.assign(new Error(`malformed message: ${(err as Error).message}`), { statusCode: 400 }))
        return
      }
      const type = (msg as { type?: unknown })?.type
      const id = typeof (msg as { id?: unknown })?.id === 'string' ? (msg as { id: string }).id : null
      if (type === 'cancel') {
        if (!Value.Check(CancelMessage, msg)) { const e = firstError(CancelMessage, msg); send({ type: 'error', id, error: { ...e, type: 'validation', code: 422 } }); return }
        active.get(msg.id)?.cancel()
        return
      }
      if (type !== 'generate') { send({ type: 'error', id, error: { message: 'type must be "generate" or "cancel"', type: 'validation', param: 'type', code: 422 } }); return }
      if (!Value.Check(GenerateMessage, msg)) { const e = firstError(GenerateMessage, msg); send({ type: 'error', id, error: { ...e, type: 'validation', code: 422 } }); return }
      start(msg).catch((err) => { fail(msg.id, err) })
    })

    socket.on('close', () => {
      if (poll !== null) clearInterval(poll)
      for (const h of active.values()) h.cancel()
      active.clear()
    })
  })
}
