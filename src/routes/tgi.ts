// TGI-compatible routes: POST /generate, POST /generate_stream (SSE), GET /info, GET /health.
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import type { GenerationResult, TokenInfo } from '../engine/engine.ts'
import { unavailable } from '../errors.ts'
import { checkTopK, fromTgi, MAX_NEW_TOKENS, TgiParameters } from '../generation/params.ts'
import type { GenerationSpec } from '../generation/service.ts'
import { disconnectSignal } from '../http/disconnect.ts'
import { SseStream } from '../http/sse.ts'
import type { LoadedModel } from '../models/registry.ts'

const GenerateBody = Type.Object({
  inputs: Type.String({ maxLength: 1_000_000 }),
  parameters: Type.Optional(TgiParameters),
  stream: Type.Optional(Type.Boolean())
}, { additionalProperties: false })
type GenerateBodyT = Static<typeof GenerateBody>

const TGI_FINISH = { length: 'length', eos_token: 'eos_token', stop: 'stop_sequence', cancelled: 'cancelled' } as const
const VERSION = '0.1.0'

function token (t: TokenInfo) {
  return { id: t.id, text: t.text, logprob: t.logprob, special: t.special }
}

function topTokens (model: LoadedModel, t: TokenInfo) {
  return t.top.map((c) => ({ id: c.id, text: model.tokenizer.decode([c.id]), logprob: c.logprob, special: c.id === model.manifest.eos_token_id }))
}

export default async function tgiRoutes (app: FastifyInstance): Promise<void> {
  const { generation, registry, config } = app.t2r

  function spec (body: GenerateBodyT): GenerationSpec {
    const p = body.parameters ?? {}
    const model = generation.resolveModel(p.model, 'parameters.model')
    const r = fromTgi(p, model.manifest.generation_defaults?.max_new_tokens ?? 100)
    checkTopK(r.params.topK, model.manifest.vocab_size, 'parameters.top_k')
    return { model, prompt: body.inputs, sessionId: p.session_id ?? null, ...r }
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

  app.post('/generate', { schema: { body: GenerateBody } }, async (request, reply) => {
    const body = request.body as GenerateBodyT
    const s = spec(body)
    const tokens: TokenInfo[] = []
    const { result, started } = await generation.complete(s, disconnectSignal(reply), (t) => { tokens.push(t) })
    const text = (body.parameters?.return_full_text === true ? body.inputs : '') + result.text
    return {
      generated_text: text,
      ...(body.parameters?.details === true ? { details: details(s, result, tokens, started.seed, started.inputIds, body.parameters.decoder_input_details === true) } : {})
    }
  })

  app.post('/generate_stream', { schema: { body: GenerateBody } }, async (request, reply) => {
    const body = request.body as GenerateBodyT
    const s = spec(body)
    const sse = new SseStream(request, reply)
    let held: TokenInfo | null = null
    let flushTimer: NodeJS.Immediate | null = null
    const event = (t: TokenInfo, generated: string | null, d: unknown) => ({
      index: 0, token: token(t), generated_text: generated, details: d,
      ...(s.params.topLogprobs > 0 ? { top_tokens: topTokens(s.model, t) } : {})
    })
    const flush = (): void => {
      if (held !== null) sse.send(event(held, null, null))
      held = null
      flushTimer = null
    }
    try {
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
          sse.send(event(last, full, { finish_reason: TGI_FINISH[result.finishReason], generated_tokens: result.tokens.length, seed: s.params.temperature === 0 ? null : started.seed }))
          sse.end()
        },
        error (err) {
          sse.send({ error: err.message, error_type: 'generation' }, 'error')
          sse.end()
        }
      })
      sse.attach(started.handle)
    } catch (err) {
      const e = err as { message: string, type?: string }
      sse.send({ error: e.message, error_type: e.type ?? 'generation' }, 'error')
      sse.end()
    }
  })

  app.get('/info', async () => {
    const m = registry.defaultModel()
    if (m === undefined) throw unavailable('no model is loaded')
    return {
      model_id: m.name,
      model_sha: null,
      model_dtype: 'float32',
      model_device_type: config.executionProvider,
      model_pipeline_tag: 'text-generation',
      architecture: m.manifest.architecture,
      max_concurrent_requests: config.maxInFlight,
      max_best_of: 1,
      max_stop_sequences: 8,
      max_input_tokens: config.maxInputTokens,
      max_total_tokens: m.manifest.architecture === 'softmax' ? config.maxInputTokens + MAX_NEW_TOKENS : null,
      max_batch_size: config.maxBatch,
      version: VERSION,
      router: 't2r-serve',
      models: registry.list().map((x) => x.name)
    }
  })

  app.get('/health', async (_request, reply) => {
    if (generation.draining) throw unavailable('shutting down')
    if (!registry.ready) throw unavailable('models are loading')
    if (registry.list().length === 0) throw unavailable('no model could be loaded')
    return reply.code(200).send()
  })
}
