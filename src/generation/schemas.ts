// Wire schemas of the generation APIs (TypeBox → JSON Schema for Fastify's validation and types for
// the routes through the TypeBox type provider). One definition per field, shared by TGI, OpenAI,
// sessions and the WebSocket stream.
import { Type, type Static, type TSchema } from '@sinclair/typebox'

export const MAX_NEW_TOKENS = 4096
export const MAX_PROMPT_CHARS = 1_000_000
export const MAX_STOP_SEQUENCES = 8

export const SessionId = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' })
export const ModelName = Type.String({ minLength: 1, maxLength: 256 })
const Seed = Type.Integer({ minimum: 0, maximum: 2 ** 53 - 1 })
const StopString = Type.String({ minLength: 1, maxLength: 256 })
const StopList = Type.Array(StopString, { maxItems: MAX_STOP_SEQUENCES })
const PromptText = Type.String({ maxLength: MAX_PROMPT_CHARS })
const nullable = <T extends TSchema>(t: T) => Type.Optional(Type.Union([t, Type.Null()]))

/** TGI's `parameters` object (text-generation-inference's GenerateParameters). */
export const TgiParameters = Type.Object({
  max_new_tokens: nullable(Type.Integer({ minimum: 0, maximum: MAX_NEW_TOKENS })),
  temperature: nullable(Type.Number({ exclusiveMinimum: 0, maximum: 100 })),
  top_k: nullable(Type.Integer({ minimum: 1 })),
  top_p: nullable(Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1 })),
  typical_p: nullable(Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1 })),
  repetition_penalty: nullable(Type.Number({ exclusiveMinimum: 0, maximum: 10 })),
  frequency_penalty: nullable(Type.Number({ minimum: -2, maximum: 2 })),
  presence_penalty: nullable(Type.Number({ minimum: -2, maximum: 2 })),
  do_sample: Type.Optional(Type.Boolean()),
  seed: nullable(Seed),
  stop: Type.Optional(StopList),
  details: Type.Optional(Type.Boolean()),
  decoder_input_details: Type.Optional(Type.Boolean()),
  return_full_text: nullable(Type.Boolean()),
  top_n_tokens: nullable(Type.Integer({ minimum: 0, maximum: 10 })),
  truncate: Type.Optional(Type.Null()),
  watermark: Type.Optional(Type.Literal(false)),
  best_of: nullable(Type.Literal(1)),
  ignore_eos: Type.Optional(Type.Boolean()),
  session_id: Type.Optional(SessionId),
  model: Type.Optional(ModelName)
}, { additionalProperties: false })
export type TgiParametersT = Static<typeof TgiParameters>

export const TgiGenerateBody = Type.Object({
  inputs: PromptText,
  parameters: Type.Optional(TgiParameters),
  stream: Type.Optional(Type.Boolean())
}, { additionalProperties: false })
export type TgiGenerateBodyT = Static<typeof TgiGenerateBody>

/** OpenAI's sampling parameters, plus vLLM's common extensions (top_k, repetition_penalty...). */
export const OpenAiSampling = {
  max_tokens: nullable(Type.Integer({ minimum: 0, maximum: MAX_NEW_TOKENS })),
  temperature: nullable(Type.Number({ minimum: 0, maximum: 2 })),
  top_p: nullable(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
  top_k: nullable(Type.Integer({ minimum: -1 })),
  typical_p: nullable(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
  repetition_penalty: nullable(Type.Number({ exclusiveMinimum: 0, maximum: 10 })),
  frequency_penalty: nullable(Type.Number({ minimum: -2, maximum: 2 })),
  presence_penalty: nullable(Type.Number({ minimum: -2, maximum: 2 })),
  seed: nullable(Seed),
  stop: Type.Optional(Type.Union([StopString, StopList, Type.Null()])),
  logprobs: nullable(Type.Integer({ minimum: 0, maximum: 10 })),
  ignore_eos: Type.Optional(Type.Boolean())
}
const OpenAiSamplingObject = Type.Object(OpenAiSampling)
export type OpenAiSamplingT = Static<typeof OpenAiSamplingObject>

export const CompletionPrompt = Type.Union([
  PromptText,
  Type.Array(PromptText, { minItems: 1, maxItems: 1 }),
  Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 100_000 })
])

const completionFields = {
  prompt: Type.Optional(CompletionPrompt),
  stream: Type.Optional(Type.Boolean()),
  stream_options: nullable(Type.Object({ include_usage: Type.Optional(Type.Boolean()) }, { additionalProperties: false })),
  n: Type.Optional(Type.Literal(1)),
  best_of: nullable(Type.Literal(1)),
  echo: Type.Optional(Type.Boolean()),
  suffix: Type.Optional(Type.Null()),
  user: Type.Optional(Type.String({ maxLength: 256 })),
  // TGI's names, as Hugging Face clients send them to /v1/completions: do_sample false is greedy,
  // return_full_text echoes the prompt; the detail flags are accepted and have no effect here.
  do_sample: Type.Optional(Type.Boolean()),
  return_full_text: nullable(Type.Boolean()),
  details: Type.Optional(Type.Boolean()),
  decoder_input_details: Type.Optional(Type.Boolean()),
  watermark: Type.Optional(Type.Literal(false)),
  truncate: Type.Optional(Type.Null()),
  ...OpenAiSampling
}

export const CompletionBody = Type.Object({
  model: Type.Optional(ModelName),
  session_id: Type.Optional(SessionId),
  ...completionFields
}, { additionalProperties: false })
export type CompletionBodyT = Static<typeof CompletionBody>

/** A completion on /v1/sessions/:id/completions: the session names the model. */
export const SessionCompletionBody = Type.Object(completionFields, { additionalProperties: false })
export type SessionCompletionBodyT = Static<typeof SessionCompletionBody>

/** WebSocket /v1/stream messages. */
export const ClientId = Type.String({ minLength: 1, maxLength: 128 })
export const StreamGenerateMessage = Type.Object({
  type: Type.Literal('generate'),
  id: ClientId,
  model: Type.Optional(ModelName),
  prompt: PromptText,
  session_id: Type.Optional(SessionId),
  ...OpenAiSampling
}, { additionalProperties: false })
export type StreamGenerateMessageT = Static<typeof StreamGenerateMessage>
export const StreamCancelMessage = Type.Object({ type: Type.Literal('cancel'), id: ClientId }, { additionalProperties: false })

/** OpenAI chat messages: string content, or content parts (text ones only: checked in chatSpec). */
export const ChatMessageSchema = Type.Object({
  role: Type.String({ maxLength: 64 }),
  content: Type.Union([PromptText, Type.Array(Type.Object({ type: Type.String({ maxLength: 64 }), text: Type.Optional(PromptText) }), { maxItems: 1024 })]),
  name: Type.Optional(Type.String({ maxLength: 256 }))
}, { additionalProperties: false })
export type ChatMessageT = Static<typeof ChatMessageSchema>

/** POST /v1/chat/completions: OpenAI's chat fields, the shared sampling fields, and session_id. */
export const ChatCompletionBody = Type.Object({
  model: Type.Optional(ModelName),
  messages: Type.Array(ChatMessageSchema, { minItems: 1, maxItems: 10_000 }),
  session_id: Type.Optional(SessionId),
  stream: Type.Optional(Type.Boolean()),
  stream_options: nullable(Type.Object({ include_usage: Type.Optional(Type.Boolean()) }, { additionalProperties: false })),
  n: Type.Optional(Type.Literal(1)),
  user: Type.Optional(Type.String({ maxLength: 256 })),
  max_completion_tokens: nullable(Type.Integer({ minimum: 0, maximum: MAX_NEW_TOKENS })),
  ...OpenAiSampling,
  // Chat's logprobs is a flag (token log-probabilities are not offered on this route).
  logprobs: nullable(Type.Literal(false))
}, { additionalProperties: false })
export type ChatCompletionBodyT = Static<typeof ChatCompletionBody>
