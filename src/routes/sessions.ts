// Sessions: create (optionally prefilled), inspect, delete, fork, export/import state, and
// completions that continue a session's state without re-reading its history.
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import { GREEDY } from '../engine/sampler.ts'
import { conflict, notFound, unprocessable } from '../errors.ts'
import { StateFormatError } from '../sessions/state-file.ts'
import { SessionBusyError, SessionNotFoundError, type SessionInfo } from '../sessions/store.ts'
import { CompletionBody, handleCompletion, type CompletionBodyT } from './openai.ts'

const IdParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) })
type IdParamsT = Static<typeof IdParams>
const CreateBody = Type.Object({
  model: Type.Optional(Type.String({ minLength: 1 })),
  prompt: Type.Optional(Type.String({ maxLength: 1_000_000 }))
}, { additionalProperties: false })
const CompletionWithoutSession = Type.Omit(CompletionBody, ['session_id', 'model'], { additionalProperties: false })
const STATE_LIMIT = 512 * 1024 * 1024

function view (s: SessionInfo) {
  return {
    id: s.id,
    object: 'session',
    model: s.model,
    tokens_consumed: s.position,
    pending_tokens: s.pending.length,
    state_bytes: s.stateBytes,
    busy: s.busy,
    created_at: Math.floor(s.createdAt / 1000),
    last_used_at: Math.floor(s.lastUsedAt / 1000),
    expires_at: Math.floor(s.expiresAt / 1000)
  }
}

function mapSessionError (err: unknown): never {
  if (err instanceof SessionNotFoundError) throw notFound(err.message, 'id')
  if (err instanceof SessionBusyError) throw conflict(err.message, 'id')
  if (err instanceof StateFormatError) throw unprocessable(`invalid state: ${err.message}`, 'body')
  throw err
}

export default async function sessionRoutes (app: FastifyInstance): Promise<void> {
  const { sessions, generation } = app.t2r

  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: STATE_LIMIT }, (_req, body, done) => { done(null, body) })

  app.post('/v1/sessions', { schema: { body: CreateBody } }, async (request, reply) => {
    const body = (request.body ?? {}) as Static<typeof CreateBody>
    const model = generation.resolveModel(body.model)
    const info = sessions.create(model.name)
    if (body.prompt !== undefined && body.prompt !== '') {
      const abort = new AbortController()
      try {
        await generation.complete({ model, prompt: body.prompt, sessionId: info.id, maxNewTokens: 0, params: GREEDY, seed: 0, stop: [], ignoreEos: false }, abort.signal)
      } catch (err) {
        sessions.delete(info.id)
        throw err
      }
    }
    return await reply.code(201).send(view(sessions.info(info.id)))
  })

  app.get('/v1/sessions', async () => ({ object: 'list', data: sessions.list().map(view) }))

  app.get('/v1/sessions/:id', { schema: { params: IdParams } }, async (request) => {
    try { return view(sessions.info((request.params as IdParamsT).id)) } catch (err) { return mapSessionError(err) }
  })

  app.delete('/v1/sessions/:id', { schema: { params: IdParams } }, async (request) => {
    const { id } = request.params as IdParamsT
    try {
      if (sessions.info(id).busy) throw new SessionBusyError(`session ${id} is generating`)
      sessions.delete(id)
    } catch (err) { return mapSessionError(err) }
    return { id, object: 'session', deleted: true }
  })

  app.post('/v1/sessions/:id/fork', { schema: { params: IdParams } }, async (request, reply) => {
    try {
      return await reply.code(201).send(view(sessions.fork((request.params as IdParamsT).id)))
    } catch (err) { return mapSessionError(err) }
  })

  app.get('/v1/sessions/:id/state', { schema: { params: IdParams } }, async (request, reply) => {
    const { id } = request.params as IdParamsT
    let buf: Buffer
    try { buf = sessions.exportState(id) } catch (err) { return mapSessionError(err) }
    return await reply
      .header('content-type', 'application/octet-stream')
      .header('content-disposition', `attachment; filename="${id}.t2rs"`)
      .send(buf)
  })

  app.put('/v1/sessions/:id/state', { schema: { params: IdParams }, bodyLimit: STATE_LIMIT }, async (request) => {
    const { id } = request.params as IdParamsT
    if (!Buffer.isBuffer(request.body)) throw unprocessable('send the state as application/octet-stream', 'body')
    try { return view(sessions.importState(id, request.body)) } catch (err) { return mapSessionError(err) }
  })

  app.post('/v1/sessions/:id/completions', { schema: { params: IdParams, body: CompletionWithoutSession } }, async (request, reply) => {
    const { id } = request.params as IdParamsT
    let modelName: string
    try { modelName = sessions.info(id).model } catch (err) { return mapSessionError(err) }
    const model = generation.resolveModel(modelName)
    return await handleCompletion(generation, request, reply, request.body as CompletionBodyT, id, model)
  })
}
