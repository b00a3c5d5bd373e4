// TGI-compatible routes: POST /generate, POST /generate_stream (SSE), POST / (TGI's compat route,
// which Hugging Face clients call), GET /info, GET /health.
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { MAX_NEW_TOKENS, MAX_STOP_SEQUENCES, TgiGenerateBody, type TgiGenerateBodyT } from '../generation/schemas.ts'
import type { GenerationResult, GenerationSpec, TokenInfo } from '../generation/spec.ts'
import { tgiSpec } from '../generation/validate.ts'
import { disconnectSignal } from '../http/disconnect.ts'
import { SseStream } from '../http/sse.ts'
import type { Tenant } from '../auth/tenant.ts'
import type { LoadedModel } from '../models/registry.ts'

const TGI_FINISH = { length: 'length', eos_token: 'eos_token', stop: 'stop_sequence', cancelled: 'cancelled' } as const
const VERSION = '0.1.0'

const Token = Type.Object({ id: Type.Integer(), text: Type.String(), logprob: Type.Union([Type.Number(), Type.Null()]), special: Type.Boolean() })
const Details = Type.Object({
  finish_reason: Type.String(),
  generated_tokens: Type.Integer(),
  seed: Type.Union([Type.Integer(), Type.Null()]),
  prefill: Type.Array(Type.Object({ id: Type.Integer(), text: Type.String(), logprob: Type.Null() })),
  tokens: Type.Array(Token),
  top_tokens: Type.Optional(Type.Array(Type.Array(Token)))
})
const GenerateResponse = Type.Object({ generated_text: Type.String(), details: Type.Optional(Details) })
const InfoResponse = Type.Object({
  model_id: Type.String(),
  model_sha: Type.Null(),
  model_dtype: Type.String(),
  model_device_type: Type.String(),
  model_pipeline_tag: Type.String(),
  architecture: Type.String(),
  max_concurrent_requests: Type.Integer(),
  max_best_of: Type.Integer(),
  max_stop_sequences: Type.Integer(),
  max_input_tokens: Type.Integer(),
  max_total_tokens: Type.Union([Type.Integer(), Type.Null()]),
  max_batch_size: Type.Integer(),
  version: Type.String(),
  router: Type.String(),
  models: Type.Array(Type.String())
})

const token = (t: TokenInfo) => ({ id: t.id, text: t.text, logprob: t.logprob, special: t.special })

function topTokens (model: LoadedModel, t: TokenInfo) {
  return t.top.map((c) => ({ id: c.id, text: model.tokenizer.decode([c.id]), logprob: c.logprob, special: c.id === model.manifest.eos_token_id }))
}

function details (s: GenerationSpec, result: GenerationResult, tokens: TokenInfo[], seed: number, promptIds: number[], withPrefill: boolean) {
  return {
    finish_reason: TGI_FINISH[result.finishReason],
    generated_tokens: result.tokens.length,
    seed: s.params.temperature === 0 ? null : seed,
    prefill: withPrefill ? promptIds.map((id) => ({ id, text: s.model.tokenizer.decode([id]), logprob: null })) : [],
    tokens: tokens.map(token),
    ...(s.params.topLogprobs > 0 ? { top_tokens: tokens.map((t) => topTokens(s.model, t)) } : {})
  }
}

const tgiRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { generation, registry, config } = app.t2r

  const spec = (body: TgiGenerateBodyT, tenant: Tenant): GenerationSpec => tgiSpec(body, generation.resolveModel(body.parameters?.model, 'parameters.model'), tenant)

  async function generate (body: TgiGenerateBodyT, reply: FastifyReply) {
    const s = spec(body, reply.request.tenant)
    const tokens: TokenInfo[] = []
    const { result, started } = await generation.complete(s, disconnectSignal(reply), (t) => { tokens.push(t) })
    const text = (body.parameters?.return_full_text === true ? body.inputs : '') + result.text
    return {
      generated_text: text,
      ...(body.parameters?.details === true ? { details: details(s, result, tokens, started.seed, started.inputIds, body.parameters.decoder_input_details === true) } : {})
    }
  }

  async function generateStream (body: TgiGenerateBodyT, request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const s = spec(body, request.tenant)
    const sse = new SseStream(request, reply)
    let held: TokenInfo | null = null
    let flushTimer: NodeJS.Immediate | null = null
    const event = (t: TokenInfo, generated: string | null, d: unknown) => ({
      index: 0,
      token: token(t),
      generated_text: generated,
      details: d,
      ...(s.params.topLogprobs > 0 ? { top_tokens: topTokens(s.model, t) } : {})
    })
    const flush = (): void => {
      if (held !== null) sse.send(event(held, null, null))
      held = null
      flushTimer = null
    }
    let seed = 0
    const started = await generation.start(s, {
      // A token is sent on the next tick unless the generation ends in the same step, in which
      // case it becomes TGI's final event carrying generated_text and details.
      token (t) {
        flush()
        held = t
        flushTimer = setImmediate(flush)
      },
      end (result) {
        if (flushTimer !== null) clearImmediate(flushTimer)
        const last = held ?? { id: -1, text: '', logprob: 0, special: true, top: [] }
        held = null
        const full = (body.parameters?.return_full_text === true ? body.inputs : '') + result.text
        sse.send(event(last, full, { finish_reason: TGI_FINISH[result.finishReason], generated_tokens: result.tokens.length, seed: s.params.temperature === 0 ? null : seed }))
        sse.end()
      },
      error (err) {
        sse.send({ error: err.message, error_type: 'generation' }, 'error')
        sse.end()
      }
    }, disconnectSignal(reply))
    seed = started.seed
    sse.open(started.handle)
  }

  app.post('/generate', { schema: { body: TgiGenerateBody, response: { 200: GenerateResponse } } }, async (request, reply) => await generate(request.body, reply))

  app.post('/generate_stream', { schema: { body: TgiGenerateBody } }, async (request, reply) => { await generateStream(request.body, request, reply) })

  // TGI's compat route: `stream` in the body chooses between the two (huggingface_hub posts here).
  app.post('/', { schema: { body: TgiGenerateBody } }, async (request, reply) => {
    if (request.body.stream === true) { await generateStream(request.body, request, reply); return }
    return [await generate(request.body, reply)]
  })

  app.get('/info', { schema: { response: { 200: InfoResponse } } }, async () => {
    const m = generation.resolveModel(undefined)
    return {
      model_id: m.name,
      model_sha: null,
      model_dtype: 'float32',
      model_device_type: config.executionProvider,
      model_pipeline_tag: 'text-generation',
      architecture: m.manifest.architecture,
      max_concurrent_requests: config.maxInFlight,
      max_best_of: 1,
      max_stop_sequences: MAX_STOP_SEQUENCES,
      max_input_tokens: config.maxInputTokens,
      max_total_tokens: m.manifest.architecture === 'softmax' ? config.maxInputTokens + MAX_NEW_TOKENS : null,
      max_batch_size: config.maxBatch,
      version: VERSION,
      router: 't2r-serve',
      models: registry.list().map((x) => x.name)
    }
  })

  app.get('/health', async (_request, reply) => {
    const down = generation.unavailability()
    if (down !== null) throw down
    return await reply.code(200).send()
  })
}

export default tgiRoutes
