// Request schemas for generation parameters (TypeBox → JSON Schema for Fastify's validation) and
// their translation into the engine's sampling parameters.
import { Type, type Static } from '@sinclair/typebox'
import type { SamplingParams } from '../engine/sampler.ts'
import { unprocessable } from '../errors.ts'

export const MAX_NEW_TOKENS = 4096
const Seed = Type.Integer({ minimum: 0, maximum: 2 ** 53 - 1 })
const StopList = Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { maxItems: 8 })

/** TGI's `parameters` object (text-generation-inference's GenerateParameters). */
export const TgiParameters = Type.Object({
  max_new_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: MAX_NEW_TOKENS }), Type.Null()])),
  temperature: Type.Optional(Type.Union([Type.Number({ exclusiveMinimum: 0, maximum: 100 }), Type.Null()])),
  top_k: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
  top_p: Type.Optional(Type.Union([Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1 }), Type.Null()])),
  typical_p: Type.Optional(Type.Union([Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1 }), Type.Null()])),
  repetition_penalty: Type.Optional(Type.Union([Type.Number({ exclusiveMinimum: 0, maximum: 10 }), Type.Null()])),
  frequency_penalty: Type.Optional(Type.Union([Type.Number({ minimum: -2, maximum: 2 }), Type.Null()])),
  presence_penalty: Type.Optional(Type.Union([Type.Number({ minimum: -2, maximum: 2 }), Type.Null()])),
  do_sample: Type.Optional(Type.Boolean()),
  seed: Type.Optional(Type.Union([Seed, Type.Null()])),
  stop: Type.Optional(StopList),
  details: Type.Optional(Type.Boolean()),
  decoder_input_details: Type.Optional(Type.Boolean()),
  return_full_text: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
  top_n_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: 10 }), Type.Null()])),
  truncate: Type.Optional(Type.Null()),
  watermark: Type.Optional(Type.Literal(false)),
  best_of: Type.Optional(Type.Union([Type.Literal(1), Type.Null()])),
  ignore_eos: Type.Optional(Type.Boolean()),
  session_id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' })),
  model: Type.Optional(Type.String())
}, { additionalProperties: false })

export type TgiParametersT = Static<typeof TgiParameters>

export interface Resolved {
  maxNewTokens: number
  params: SamplingParams
  seed: number | null
  stop: string[]
  ignoreEos: boolean
}

/** The sampling fields TGI and OpenAI requests share, by their wire names. */
interface WireSampling {
  top_k?: number | null
  top_p?: number | null
  typical_p?: number | null
  repetition_penalty?: number | null
  frequency_penalty?: number | null
  presence_penalty?: number | null
}

function sampling (p: WireSampling, temperature: number, topLogprobs: number): SamplingParams {
  return {
    temperature,
    topK: p.top_k == null || p.top_k < 0 ? 0 : p.top_k,
    topP: p.top_p ?? 1,
    typicalP: p.typical_p ?? 1,
    repetitionPenalty: p.repetition_penalty ?? 1,
    frequencyPenalty: p.frequency_penalty ?? 0,
    presencePenalty: p.presence_penalty ?? 0,
    topLogprobs
  }
}

export function fromTgi (p: TgiParametersT, defaultMaxNewTokens: number): Resolved {
  const warpers = (p.temperature != null && p.temperature !== 1) || p.top_k != null || p.top_p != null || p.typical_p != null
  const sample = p.do_sample === true || warpers // TGI: any warper turns sampling on
  return {
    maxNewTokens: p.max_new_tokens ?? defaultMaxNewTokens,
    params: sampling(p, sample ? (p.temperature ?? 1) : 0, p.top_n_tokens ?? 0),
    seed: p.seed ?? null,
    stop: p.stop ?? [],
    ignoreEos: p.ignore_eos ?? false
  }
}

/** OpenAI's completion parameters, plus vLLM's common extensions (top_k, repetition_penalty...). */
export const OpenAiSampling = {
  max_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: MAX_NEW_TOKENS }), Type.Null()])),
  temperature: Type.Optional(Type.Union([Type.Number({ minimum: 0, maximum: 2 }), Type.Null()])),
  top_p: Type.Optional(Type.Union([Type.Number({ exclusiveMinimum: 0, maximum: 1 }), Type.Null()])),
  top_k: Type.Optional(Type.Union([Type.Integer({ minimum: -1 }), Type.Null()])),
  typical_p: Type.Optional(Type.Union([Type.Number({ exclusiveMinimum: 0, maximum: 1 }), Type.Null()])),
  repetition_penalty: Type.Optional(Type.Union([Type.Number({ exclusiveMinimum: 0, maximum: 10 }), Type.Null()])),
  frequency_penalty: Type.Optional(Type.Union([Type.Number({ minimum: -2, maximum: 2 }), Type.Null()])),
  presence_penalty: Type.Optional(Type.Union([Type.Number({ minimum: -2, maximum: 2 }), Type.Null()])),
  seed: Type.Optional(Type.Union([Seed, Type.Null()])),
  stop: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 256 }), StopList, Type.Null()])),
  logprobs: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: 10 }), Type.Null()])),
  ignore_eos: Type.Optional(Type.Boolean())
}

export interface OpenAiSamplingT {
  max_tokens?: number | null
  temperature?: number | null
  top_p?: number | null
  top_k?: number | null
  typical_p?: number | null
  repetition_penalty?: number | null
  frequency_penalty?: number | null
  presence_penalty?: number | null
  seed?: number | null
  stop?: string | string[] | null
  logprobs?: number | null
  ignore_eos?: boolean
}

export function fromOpenAi (p: OpenAiSamplingT, defaultMaxTokens = 16): Resolved {
  return {
    maxNewTokens: p.max_tokens ?? defaultMaxTokens,
    params: sampling(p, p.temperature ?? 1, p.logprobs ?? 0),
    seed: p.seed ?? null,
    stop: p.stop == null ? [] : typeof p.stop === 'string' ? [p.stop] : p.stop,
    ignoreEos: p.ignore_eos ?? false
  }
}

export function checkTopK (topK: number, vocab: number, param = 'top_k'): void {
  if (topK > vocab) throw unprocessable(`${param} must be at most the vocabulary size (${vocab})`, param)
}
