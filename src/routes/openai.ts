// OpenAI-compatible routes: POST /v1/completions (streamed or not), the same completion continuing
// a session (POST /v1/sessions/:id/completions), and GET /v1/models.
import { randomUUID } from 'node:crypto'
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { QuantizationSchema } from '../contract/schemas.ts'
import { CompletionBody, SessionCompletionBody, SessionId, type CompletionBodyT, type SessionCompletionBodyT } from '../generation/schemas.ts'
import type { FinishReason, GenerationSpec, TokenInfo } from '../generation/spec.ts'
import { completionSpec, echoes, requestedModel } from '../generation/validate.ts'
import { disconnectSignal } from '../http/disconnect.ts'
import { SseStream } from '../http/sse.ts'
import type { LoadedModel } from '../models/registry.ts'
import { owned } from '../sessions/ownership.ts'

export const FINISH: Record<FinishReason, string> = { length: 'length', eos_token: 'stop', stop: 'stop', cancelled: 'cancelled' }

const Usage = Type.Object({ prompt_tokens: Type.Integer(), completion_tokens: Type.Integer(), total_tokens: Type.Integer() })
const Logprobs = Type.Object({
  tokens: Type.Array(Type.String()),
  token_logprobs: Type.Array(Type.Number()),
  top_logprobs: Type.Array(Type.Record(Type.String(), Type.Number())),
  text_offset: Type.Array(Type.Integer())
})
const CompletionResponse = Type.Object({
  id: Type.String(),
  object: Type.Literal('text_completion'),
  created: Type.Integer(),
  model: Type.String(),
  system_fingerprint: Type.Null(),
  choices: Type.Array(Type.Object({ index: Type.Integer(), text: Type.String(), logprobs: Type.Union([Logprobs, Type.Null()]), finish_reason: Type.String() })),
  usage: Usage,
  session_id: Type.Optional(Type.String())
})
const ModelList = Type.Object({
  object: Type.Literal('list'),
  data: Type.Array(Type.Object({
    id: Type.String(),
    object: Type.Literal('model'),
    created: Type.Integer(),
    owned_by: Type.String(),
    architecture: Type.String(),
    teacher: Type.Union([Type.String(), Type.Null()]),
    metrics: Type.Record(Type.String(), Type.Unknown()),
    // Present on a weight-quantized model: its bits, its source model and both perplexities.
    quantization: Type.Union([QuantizationSchema, Type.Null()])
  }))
})

function logprobsOf (model: LoadedModel, tokens: TokenInfo[], offset: number) {
  let at = offset
  return {
    tokens: tokens.map((t) => t.text),
    token_logprobs: tokens.map((t) => t.logprob),
    top_logprobs: tokens.map((t) => Object.fromEntries(t.top.map((c) => [model.tokenizer.decode([c.id]), c.logprob]))),
    text_offset: tokens.map((t) => { const o = at; at += t.text.length; return o })
  }
}

const openAiRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { generation, registry, sessions } = app.t2r

  async function completion (request: FastifyRequest, reply: FastifyReply, body: CompletionBodyT | SessionCompletionBodyT, spec: GenerationSpec) {
    const { model, sessionId } = spec
    const id = `cmpl-${randomUUID().replaceAll('-', '')}`
    const created = Math.floor(Date.now() / 1000)
    const withLogprobs = body.logprobs != null
    const echoText = echoes(body) ? (typeof spec.prompt === 'string' ? spec.prompt : model.tokenizer.decode(spec.prompt)) : ''
    const usage = (prompt: number, completion: number) => ({ prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion })

    if (body.stream !== true) {
      const tokens: TokenInfo[] = []
      const { result, started } = await generation.complete(spec, disconnectSignal(reply), (t) => { tokens.push(t) })
      return {
        id,
        object: 'text_completion' as const,
        created,
        model: model.name,
        system_fingerprint: null,
        choices: [{ index: 0, text: echoText + result.text, logprobs: withLogprobs ? logprobsOf(model, tokens, echoText.length) : null, finish_reason: FINISH[result.finishReason] }],
        usage: usage(started.promptTokens, result.tokens.length),
        ...(sessionId !== null ? { session_id: sessionId } : {})
      }
    }

    const sse = new SseStream(request, reply)
    const chunk = (text: string, finish: string | null, logprobs: unknown) => ({
      id, object: 'text_completion', created, model: model.name, choices: [{ index: 0, text, logprobs, finish_reason: finish }]
    })
    let offset = 0
    let promptTokens = 0
    const started = await generation.start(spec, {
      token (t) {
        sse.send(chunk(t.text, null, withLogprobs ? logprobsOf(model, [t], offset) : null))
        offset += t.text.length
      },
      end (result) {
        sse.send(chunk('', FINISH[result.finishReason], null))
        if (body.stream_options?.include_usage === true) {
          sse.send({ id, object: 'text_completion', created, model: model.name, choices: [], usage: usage(promptTokens, result.tokens.length) })
        }
        sse.send('[DONE]')
        sse.end()
      },
      error (err) {
        sse.failOpenAi(err.message)
      }
    }, disconnectSignal(reply))
    promptTokens = started.promptTokens
    sse.open(started.handle)
    return reply
  }

  app.post('/v1/completions', { schema: { body: CompletionBody, response: { 200: CompletionResponse } } }, async (request, reply) => {
    const body = request.body
    const model = generation.resolveModel(requestedModel(body.model, request.headers.host, (n) => registry.has(n)))
    const spec = completionSpec(body, model, body.session_id ?? null, request.tenant)
    return await completion(request, reply, body, spec)
  })

  app.post('/v1/sessions/:id/completions', {
    schema: { params: Type.Object({ id: SessionId }), body: SessionCompletionBody, response: { 200: CompletionResponse } }
  }, async (request, reply) => {
    const { id } = request.params
    const spec = completionSpec(request.body, generation.resolveModel((await owned(sessions, id, request.tenant)).model), id, request.tenant)
    return await completion(request, reply, request.body, spec)
  })

  app.get('/v1/models', { schema: { response: { 200: ModelList } } }, async () => ({
    object: 'list' as const,
    data: registry.list().map((m) => ({
      id: m.name,
      object: 'model' as const,
      created: Math.floor(m.loadedAt / 1000),
      owned_by: 't2r-serve',
      architecture: m.manifest.architecture,
      teacher: m.manifest.teacher ?? null,
      metrics: m.manifest.metrics ?? {},
      quantization: m.manifest.quantization ?? null
    }))
  }))
}

export default openAiRoutes
