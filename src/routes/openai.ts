// OpenAI-compatible routes: POST /v1/completions (streamed or not) and GET /v1/models. Sessions
// reuse the completion handler (routes/sessions.ts): a completion with a session continues it.
import { randomUUID } from 'node:crypto'
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { FinishReason, TokenInfo } from '../engine/protocol.ts'
import { unprocessable } from '../errors.ts'
import { checkTopK, fromOpenAi, OpenAiSampling } from '../generation/params.ts'
import type { GenerationService, GenerationSpec } from '../generation/service.ts'
import { disconnectSignal } from '../http/disconnect.ts'
import { SseStream } from '../http/sse.ts'
import type { LoadedModel } from '../models/registry.ts'

export const CompletionBody = Type.Object({
  model: Type.Optional(Type.String({ minLength: 1 })),
  prompt: Type.Optional(Type.Union([
    Type.String({ maxLength: 1_000_000 }),
    Type.Array(Type.String({ maxLength: 1_000_000 }), { minItems: 1, maxItems: 1 }),
    Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 100_000 })
  ])),
  stream: Type.Optional(Type.Boolean()),
  stream_options: Type.Optional(Type.Union([Type.Object({ include_usage: Type.Optional(Type.Boolean()) }), Type.Null()])),
  n: Type.Optional(Type.Literal(1)),
  best_of: Type.Optional(Type.Union([Type.Literal(1), Type.Null()])),
  echo: Type.Optional(Type.Boolean()),
  suffix: Type.Optional(Type.Null()),
  user: Type.Optional(Type.String()),
  session_id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' })),
  ...OpenAiSampling
}, { additionalProperties: false })
export type CompletionBodyT = Static<typeof CompletionBody>

const FINISH: Record<FinishReason, string> = { length: 'length', eos_token: 'stop', stop: 'stop', cancelled: 'cancelled' }

function logprobsOf (model: LoadedModel, tokens: TokenInfo[], offset: number) {
  let at = offset
  return {
    tokens: tokens.map((t) => t.text),
    token_logprobs: tokens.map((t) => t.logprob),
    top_logprobs: tokens.map((t) => Object.fromEntries(t.top.map((c) => [model.tokenizer.decode([c.id]), c.logprob]))),
    text_offset: tokens.map((t) => { const o = at; at += t.text.length; return o })
  }
}

export async function handleCompletion (generation: GenerationService, request: FastifyRequest, reply: FastifyReply, body: CompletionBodyT, sessionId: string | null, model: LoadedModel) {
  if (body.echo === true && body.stream === true) throw unprocessable('echo is not supported with stream', 'echo')
  const prompt = body.prompt === undefined ? '' : Array.isArray(body.prompt) && typeof body.prompt[0] === 'string' ? body.prompt[0] as string : body.prompt as string | number[]
  const r = fromOpenAi(body, 16)
  checkTopK(r.params.topK, model.manifest.vocab_size)
  const spec: GenerationSpec = { model, prompt, sessionId, ...r }
  const id = `cmpl-${randomUUID().replaceAll('-', '')}`
  const created = Math.floor(Date.now() / 1000)
  const withLogprobs = body.logprobs != null
  const echoText = body.echo === true ? (typeof prompt === 'string' ? prompt : model.tokenizer.decode(prompt)) : ''

  if (body.stream !== true) {
    const tokens: TokenInfo[] = []
    const { result, started } = await generation.complete(spec, disconnectSignal(reply), (t) => { tokens.push(t) })
    return {
      id,
      object: 'text_completion',
      created,
      model: model.name,
      system_fingerprint: null,
      choices: [{ index: 0, text: echoText + result.text, logprobs: withLogprobs ? logprobsOf(model, tokens, echoText.length) : null, finish_reason: FINISH[result.finishReason] }],
      usage: { prompt_tokens: started.promptTokens, completion_tokens: result.tokens.length, total_tokens: started.promptTokens + result.tokens.length },
      ...(sessionId !== null ? { session_id: sessionId } : {})
    }
  }

  // Validation errors above answer with a status; once the stream is open, errors are events.
  const sse = new SseStream(request, reply)
  const chunk = (text: string, finish: string | null, logprobs: unknown) => ({
    id, object: 'text_completion', created, model: model.name, choices: [{ index: 0, text, logprobs, finish_reason: finish }]
  })
  let offset = 0
  try {
    const started = await generation.start(spec, {
      token (t) {
        sse.send(chunk(t.text, null, withLogprobs ? logprobsOf(model, [t], offset) : null))
        offset += t.text.length
      },
      end (result) {
        sse.send(chunk('', FINISH[result.finishReason], null))
        if (body.stream_options?.include_usage === true) {
          sse.send({ id, object: 'text_completion', created, model: model.name, choices: [], usage: { prompt_tokens: started.promptTokens, completion_tokens: result.tokens.length, total_tokens: started.promptTokens + result.tokens.length } })
        }
        sse.send('[DONE]')
        sse.end()
      },
      error (err) {
        sse.send({ error: { message: err.message, type: 'generation_error', param: null, code: 500 } })
        sse.end()
      }
    })
    sse.attach(started.handle)
  } catch (err) {
    const e = err as { message: string, type?: string, param?: string | null, status?: number }
    sse.send({ error: { message: e.message, type: e.type ?? 'generation_error', param: e.param ?? null, code: e.status ?? 500 } })
    sse.end()
  }
  return reply
}

export default async function openAiRoutes (app: FastifyInstance): Promise<void> {
  const { generation, registry } = app.t2r

  app.post('/v1/completions', { schema: { body: CompletionBody } }, async (request, reply) => {
    const body = request.body as CompletionBodyT
    const model = generation.resolveModel(body.model)
    return await handleCompletion(generation, request, reply, body, body.session_id ?? null, model)
  })

  app.get('/v1/models', async () => ({
    object: 'list',
    data: registry.list().map((m) => ({
      id: m.name,
      object: 'model',
      created: Math.floor(m.loadedAt / 1000),
      owned_by: 't2r-serve',
      architecture: m.manifest.architecture,
      teacher: m.manifest.teacher ?? null,
      metrics: m.manifest.metrics ?? {}
    }))
  }))
}
