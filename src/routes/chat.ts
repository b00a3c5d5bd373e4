// OpenAI chat: POST /v1/chat/completions (streamed or not) over the model's chat template, on a
// session too (`session_id`): a turn then feeds only what follows the session's last reply
// (src/chat/turns.ts has the rule). Models without a template answer 422 naming `model`.
import { randomUUID } from 'node:crypto'
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Tenant } from '../auth/tenant.ts'
import { textToFeed, turnRecord } from '../chat/turns.ts'
import { InvalidError } from '../errors.ts'
import { ChatCompletionBody, type ChatCompletionBodyT } from '../generation/schemas.ts'
import type { GenerationResult, GenerationSpec } from '../generation/spec.ts'
import { chatSpec, requestedModel } from '../generation/validate.ts'
import { disconnectSignal } from '../http/disconnect.ts'
import { SseStream } from '../http/sse.ts'
import { owned } from '../sessions/ownership.ts'
import { FINISH } from './openai.ts'

const Usage = Type.Object({ prompt_tokens: Type.Integer(), completion_tokens: Type.Integer(), total_tokens: Type.Integer() })
const ChatCompletionResponse = Type.Object({
  id: Type.String(),
  object: Type.Literal('chat.completion'),
  created: Type.Integer(),
  model: Type.String(),
  system_fingerprint: Type.Null(),
  choices: Type.Array(Type.Object({
    index: Type.Integer(),
    message: Type.Object({ role: Type.Literal('assistant'), content: Type.String() }),
    logprobs: Type.Null(),
    finish_reason: Type.String()
  })),
  usage: Usage,
  session_id: Type.Optional(Type.String())
})

const usage = (prompt: number, completion: number) => ({ prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion })

const chatRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { generation, registry, sessions } = app.t2r

  /** The generation a request asks for, and what to remember of it once it has ended (session turns). */
  async function prepare (body: ChatCompletionBodyT, host: string | undefined, tenant: Tenant): Promise<{ spec: GenerationSpec, remember: (result: GenerationResult) => Promise<void> }> {
    // Another key's session is a 404 here as everywhere (src/sessions/ownership.ts).
    const session = body.session_id === undefined ? null : await owned(sessions, body.session_id, tenant)
    const model = generation.resolveModel(requestedModel(body.model ?? session?.model, host, (n) => registry.has(n)))
    const turn = chatSpec(body, model, tenant)
    if (session === null) return { spec: turn.spec, remember: async () => {} }
    if (session.model !== model.name) throw new InvalidError(`session ${session.id} belongs to model ${session.model}`, 'model')
    const held = session.position + session.pending.length
    const prompt = textToFeed({
      sessionId: session.id,
      sessionTokens: held,
      record: held === 0 ? null : await sessions.chatTurn(session.id),
      rendered: turn.rendered,
      messages: turn.messages,
      endOfTurn: turn.template.endOfTurn
    })
    const endOfTurnId = turn.template.endOfTurn?.id ?? null
    return {
      spec: { ...turn.spec, prompt, chat: { endOfTurnId, sessionTokens: held } },
      remember: async (result) => {
        const ended = result.tokens.length > 0 && result.tokens[result.tokens.length - 1] === endOfTurnId
        await sessions.putChatTurn(session.id, turnRecord(turn.rendered, turn.messages.length, result.text, ended, result.position + result.pending.length))
      }
    }
  }

  app.post('/v1/chat/completions', { schema: { body: ChatCompletionBody, response: { 200: ChatCompletionResponse } } }, async (request, reply) => {
    const body = request.body
    const { spec, remember } = await prepare(body, request.headers.host, request.tenant)
    const id = `chatcmpl-${randomUUID().replaceAll('-', '')}`
    const created = Math.floor(Date.now() / 1000)
    const model = spec.model.name
    const sessionField = spec.sessionId !== null ? { session_id: spec.sessionId } : {}

    if (body.stream !== true) {
      const { result, started } = await generation.complete(spec, disconnectSignal(reply))
      await remember(result)
      return {
        id,
        object: 'chat.completion' as const,
        created,
        model,
        system_fingerprint: null,
        choices: [{ index: 0, message: { role: 'assistant' as const, content: result.text }, logprobs: null, finish_reason: FINISH[result.finishReason] }],
        usage: usage(started.promptTokens, result.tokens.length),
        ...sessionField
      }
    }

    const sse = new SseStream(request, reply)
    const chunk = (delta: Record<string, string>, finish: string | null) => ({
      id, object: 'chat.completion.chunk', created, model, system_fingerprint: null, ...sessionField, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }]
    })
    let promptTokens = 0
    const started = await generation.start(spec, {
      token (t) {
        if (t.text !== '') sse.send(chunk({ content: t.text }, null))
      },
      end (result) {
        const finish = (): void => {
          sse.send(chunk({}, FINISH[result.finishReason]))
          if (body.stream_options?.include_usage === true) {
            sse.send({ id, object: 'chat.completion.chunk', created, model, system_fingerprint: null, choices: [], usage: usage(promptTokens, result.tokens.length) })
          }
          sse.send('[DONE]')
          sse.end()
        }
        remember(result).then(finish, (err: Error) => {
          sse.failOpenAi(`the chat turn could not be recorded: ${err.message}`)
        })
      },
      error (err) {
        sse.failOpenAi(err.message)
      }
    }, disconnectSignal(reply))
    promptTokens = started.promptTokens
    sse.send(chunk({ role: 'assistant', content: '' }, null))
    sse.open(started.handle)
    return reply
  })
}

export default chatRoutes
