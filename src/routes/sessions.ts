// Sessions: create (optionally prefilled), list, inspect, delete, fork, export/import state.
// Completions that continue a session live with the other completions (openai.ts).
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { InvalidError } from '../errors.ts'
import { MAX_PROMPT_CHARS, ModelName, SessionId } from '../generation/schemas.ts'
import { disconnectSignal } from '../http/disconnect.ts'
import { admitSession, owned, visibleSessions } from '../sessions/ownership.ts'
import type { SessionInfo } from '../sessions/store.ts'

const IdParams = Type.Object({ id: SessionId })
const CreateBody = Type.Object({
  model: Type.Optional(ModelName),
  prompt: Type.Optional(Type.String({ maxLength: MAX_PROMPT_CHARS }))
}, { additionalProperties: false })
const STATE_LIMIT = 512 * 1024 * 1024

const Session = Type.Object({
  id: Type.String(),
  object: Type.Literal('session'),
  model: Type.String(),
  owner: Type.String(),
  tokens_consumed: Type.Integer(),
  pending_tokens: Type.Integer(),
  state_bytes: Type.Integer(),
  busy: Type.Boolean(),
  created_at: Type.Integer(),
  last_used_at: Type.Integer(),
  expires_at: Type.Integer()
})
const Deleted = Type.Object({ id: Type.String(), object: Type.Literal('session'), deleted: Type.Literal(true) })

function view (s: SessionInfo) {
  return {
    id: s.id,
    object: 'session' as const,
    model: s.model,
    owner: s.owner,
    tokens_consumed: s.position,
    pending_tokens: s.pending.length,
    state_bytes: s.stateBytes,
    busy: s.busy,
    created_at: Math.floor(s.createdAt / 1000),
    last_used_at: Math.floor(s.lastUsedAt / 1000),
    expires_at: Math.floor(s.expiresAt / 1000)
  }
}

const sessionRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { sessions, generation, config } = app.t2r

  app.post('/v1/sessions', {
    schema: { body: CreateBody, response: { 201: Session } },
    // A bare POST (no body at all) creates an empty session, as an empty object would.
    preValidation: async (request) => { request.body ??= {} }
  }, async (request, reply) => {
    const body = request.body
    const model = generation.resolveModel(body.model)
    await admitSession(sessions, request.tenant, config.access)
    const info = await sessions.create(model.name, request.tenant.key)
    if (body.prompt !== undefined && body.prompt !== '') {
      try {
        await generation.prefill(model, info.id, body.prompt, request.tenant, disconnectSignal(reply))
      } catch (err) {
        await sessions.delete(info.id)
        throw err
      }
    }
    return await reply.code(201).send(view(await sessions.info(info.id)))
  })

  app.get('/v1/sessions', { schema: { response: { 200: Type.Object({ object: Type.Literal('list'), data: Type.Array(Session) }) } } },
    async (request) => ({ object: 'list' as const, data: (await visibleSessions(sessions, request.tenant)).map(view) }))

  app.get('/v1/sessions/:id', { schema: { params: IdParams, response: { 200: Session } } }, async (request) => view(await owned(sessions, request.params.id, request.tenant)))

  app.delete('/v1/sessions/:id', { schema: { params: IdParams, response: { 200: Deleted } } }, async (request) => {
    await owned(sessions, request.params.id, request.tenant)
    await sessions.delete(request.params.id)
    return { id: request.params.id, object: 'session' as const, deleted: true as const }
  })

  app.post('/v1/sessions/:id/fork', { schema: { params: IdParams, response: { 201: Session } } }, async (request, reply) => {
    await owned(sessions, request.params.id, request.tenant)
    await admitSession(sessions, request.tenant, config.access)
    return await reply.code(201).send(view(await sessions.fork(request.params.id, request.tenant.key)))
  })

  app.get('/v1/sessions/:id/state', { schema: { params: IdParams } }, async (request, reply) => {
    const { id } = request.params
    await owned(sessions, id, request.tenant)
    const buf = await sessions.exportState(id)
    return await reply
      .header('content-type', 'application/octet-stream')
      .header('content-disposition', `attachment; filename="${id}.t2rs"`)
      .send(buf)
  })

  // Binary bodies are accepted on this route only, in their own scope: anywhere else an
  // octet-stream body is refused by its content type (415) before a byte of it is read.
  await app.register(async (plain) => {
    const scoped = plain.withTypeProvider<TypeBoxTypeProvider>()
    scoped.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: STATE_LIMIT }, (_req, body, done) => { done(null, body) })
    scoped.put('/v1/sessions/:id/state', {
      schema: { params: IdParams, response: { 200: Session } },
      bodyLimit: STATE_LIMIT,
      // Ownership is checked before the (up to 512 MiB) body is read.
      onRequest: async (request) => { await owned(sessions, (request.params as { id: string }).id, request.tenant) }
    }, async (request) => {
      if (!Buffer.isBuffer(request.body)) throw new InvalidError('send the state as application/octet-stream', 'body')
      return view(await sessions.importState(request.params.id, request.body))
    })
  })
}

export default sessionRoutes
