// The validation stage (TGI's `validation.rs`): per API, one function from a schema-checked body to
// a GenerationSpec. It resolves the model, applies the model's `generation_defaults` to the fields
// a request leaves out, and checks what a schema cannot (values against the model's vocabulary).
//
// Defaults shape sampling only: a greedy request (TGI without do_sample or a warper, OpenAI with
// temperature 0) stays a pure argmax, so it is reproducible and equal across session turns.
import type { Tenant } from '../auth/tenant.ts'
import { CHAT_ROLES, type ChatMessage, type ChatTemplate } from '../chat/template.ts'
import { GREEDY, type SamplingParams } from './backend.ts'
import { unprocessable } from '../errors.ts'
import type { LoadedModel } from '../models/registry.ts'
import type { ChatCompletionBodyT, ChatMessageT, CompletionBodyT, OpenAiSamplingT, SessionCompletionBodyT, StreamGenerateMessageT, TgiGenerateBodyT } from './schemas.ts'
import type { GenerationSpec } from './spec.ts'

const TGI_DEFAULT_MAX_NEW_TOKENS = 100
const OPENAI_DEFAULT_MAX_TOKENS = 16

type Defaults = NonNullable<LoadedModel['manifest']['generation_defaults']>

interface Sampling {
  temperature: number
  top_k?: number | null
  top_p?: number | null
  typical_p?: number | null
  repetition_penalty?: number | null
  frequency_penalty?: number | null
  presence_penalty?: number | null
  top_logprobs: number
}

function samplingParams (model: LoadedModel, s: Sampling, param: (field: string) => string): SamplingParams {
  const d: Defaults = model.manifest.generation_defaults ?? {}
  const greedy = s.temperature === 0
  const topK = s.top_k ?? (greedy ? 0 : d.top_k ?? 0)
  if (topK > model.manifest.vocab_size) throw unprocessable(`top_k must be at most the vocabulary size (${model.manifest.vocab_size})`, param('top_k'))
  return {
    ...GREEDY,
    temperature: s.temperature,
    topK: topK < 0 ? 0 : topK,
    topP: s.top_p ?? (greedy ? 1 : d.top_p ?? 1),
    typicalP: s.typical_p ?? 1,
    repetitionPenalty: s.repetition_penalty ?? (greedy ? 1 : d.repetition_penalty ?? 1),
    frequencyPenalty: s.frequency_penalty ?? 0,
    presencePenalty: s.presence_penalty ?? 0,
    topLogprobs: s.top_logprobs
  }
}

/** TGI `/generate` and `/generate_stream`. */
export function tgiSpec (body: TgiGenerateBodyT, model: LoadedModel, tenant: Tenant): GenerationSpec {
  const p = body.parameters ?? {}
  const d: Defaults = model.manifest.generation_defaults ?? {}
  const warpers = (p.temperature != null && p.temperature !== 1) || p.top_k != null || p.top_p != null || p.typical_p != null
  const sample = p.do_sample === true || warpers // TGI: any warper turns sampling on
  const temperature = sample ? (p.temperature ?? d.temperature ?? 1) : 0
  return {
    model,
    prompt: body.inputs,
    sessionId: p.session_id ?? null,
    tenant,
    maxNewTokens: p.max_new_tokens ?? d.max_new_tokens ?? TGI_DEFAULT_MAX_NEW_TOKENS,
    params: samplingParams(model, { ...p, temperature, top_logprobs: p.top_n_tokens ?? 0 }, (f) => `parameters.${f}`),
    seed: p.seed ?? null,
    stop: p.stop ?? [],
    ignoreEos: p.ignore_eos ?? false
  }
}

function openAiSpec (p: OpenAiSamplingT, model: LoadedModel, prompt: string | number[], sessionId: string | null, tenant: Tenant): GenerationSpec {
  const d: Defaults = model.manifest.generation_defaults ?? {}
  return {
    model,
    prompt,
    sessionId,
    tenant,
    maxNewTokens: p.max_tokens ?? d.max_new_tokens ?? OPENAI_DEFAULT_MAX_TOKENS,
    params: samplingParams(model, { ...p, temperature: p.temperature ?? d.temperature ?? 1, top_logprobs: p.logprobs ?? 0 }, (f) => f),
    seed: p.seed ?? null,
    stop: p.stop == null ? [] : typeof p.stop === 'string' ? [p.stop] : p.stop,
    ignoreEos: p.ignore_eos ?? false
  }
}

/** OpenAI `/v1/completions`, and `/v1/sessions/:id/completions` with the session's id. */
export function completionSpec (body: CompletionBodyT | SessionCompletionBodyT, model: LoadedModel, sessionId: string | null, tenant: Tenant): GenerationSpec {
  if (echoes(body) && body.stream === true) throw unprocessable('echo is not supported with stream', body.echo === true ? 'echo' : 'return_full_text')
  const prompt = body.prompt === undefined ? '' : Array.isArray(body.prompt) && typeof body.prompt[0] === 'string' ? body.prompt[0] : body.prompt as string | number[]
  const greedy = body.do_sample === false && body.temperature == null
  return openAiSpec(greedy ? { ...body, temperature: 0 } : body, model, prompt, sessionId, tenant)
}

/** Whether a completion repeats its prompt before the generated text (OpenAI echo, TGI return_full_text). */
export function echoes (body: CompletionBodyT | SessionCompletionBodyT): boolean {
  return body.echo === true || body.return_full_text === true
}

/** The messages as a chat template reads them: roles checked, text content parts joined by newlines. */
function chatMessages (messages: ChatMessageT[]): ChatMessage[] {
  return messages.map((m, i) => {
    const role = CHAT_ROLES.find((r) => r === m.role)
    if (role === undefined) throw unprocessable(`messages.${i}.role must be one of ${CHAT_ROLES.join(', ')}, got ${JSON.stringify(m.role)}`, `messages.${i}.role`)
    if (typeof m.content === 'string') return { role, content: m.content }
    const texts = m.content.map((part, j) => {
      if (part.type !== 'text' || part.text === undefined) throw unprocessable(`messages.${i}.content.${j}: only content parts of type text are supported, got ${JSON.stringify(part.type)}`, `messages.${i}.content.${j}`)
      return part.text
    })
    return { role, content: texts.join('\n') }
  })
}

export interface ChatTurn {
  /** The generation over the whole rendered conversation (a session turn feeds only its new part). */
  spec: GenerationSpec
  messages: ChatMessage[]
  rendered: string
  template: ChatTemplate
}

/** OpenAI `/v1/chat/completions`: the messages rendered with the model's chat template. */
export function chatSpec (body: ChatCompletionBodyT, model: LoadedModel, tenant: Tenant): ChatTurn {
  const { template } = model.chat
  if (template === null) throw unprocessable(`model ${model.name} has no chat template (${model.chat.reason}): use /v1/completions`, 'model')
  const messages = chatMessages(body.messages)
  let rendered: string
  try {
    rendered = template.render(messages)
  } catch (err) {
    throw unprocessable(`the model's chat template refused the messages: ${(err as Error).message}`, 'messages')
  }
  const spec = openAiSpec({ ...body, max_tokens: body.max_completion_tokens ?? body.max_tokens, logprobs: null }, model, rendered, body.session_id ?? null, tenant)
  return { spec: { ...spec, chat: { endOfTurnId: template.endOfTurn?.id ?? null, sessionTokens: null } }, messages, rendered, template }
}

/**
 * The model a request names. Hugging Face clients send the endpoint's URL (or "tgi") as the model:
 * a name that is no loaded model but one of those means the default model.
 */
export function requestedModel (name: string | undefined, host: string | undefined, has: (name: string) => boolean): string | undefined {
  if (name === undefined || has(name)) return name
  if (name === 'tgi') return undefined
  if (/^https?:\/\//.test(name) && host !== undefined) {
    try {
      if (new URL(name).host === host) return undefined
    } catch { /* not a URL after all: an unknown model name */ }
  }
  return name
}

/** A WebSocket `generate` message (OpenAI's sampling fields). */
export function streamMessageSpec (msg: StreamGenerateMessageT, model: LoadedModel, tenant: Tenant): GenerationSpec {
  return openAiSpec(msg, model, msg.prompt, msg.session_id ?? null, tenant)
}

/** A session's prefill: feed the prompt into the state, generate nothing. */
export function prefillSpec (model: LoadedModel, sessionId: string, prompt: string, tenant: Tenant): GenerationSpec {
  return { model, prompt, sessionId, tenant, maxNewTokens: 0, params: GREEDY, seed: 0, stop: [], ignoreEos: false }
}
