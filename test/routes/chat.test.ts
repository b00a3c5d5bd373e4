// POST /v1/chat/completions on a model with a chat template (tiny-chat: SentencePiece tokenizer,
// ChatML template) and without one (tiny-t2r): OpenAI's shapes streamed and not, sessions whose
// turns equal one call, and bad requests answered 422 naming the field.
import { cpSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { CHAT_MODEL, hfModelsDir } from '../helpers/hf-fixtures.ts'
import { postJson, readSse, startServer, type TestServer } from '../helpers/server.ts'

type Json = any // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON bodies

async function chatServer (dataDir?: string): Promise<TestServer> {
  const srv = await startServer({ modelsDir: hfModelsDir(), copyModels: true, loadModels: false, dataDir, env: { T2R_DEFAULT_MODEL: CHAT_MODEL } })
  cpSync(join(tinyModelsDir(), 'tiny-t2r'), join(srv.modelsDir, 'tiny-t2r'), { recursive: true })
  await srv.server.loadModels()
  return srv
}

const srv = await chatServer()
t.teardown(srv.close)
const chat = async (body: object, server = srv): Promise<Response> => await postJson(`${server.url}/v1/chat/completions`, body)
const chatJson = async (body: object, server = srv): Promise<Json> => {
  const res = await chat(body, server)
  if (res.status !== 200) throw new Error(`${res.status}: ${await res.text()}`)
  return await res.json()
}
const QUESTION = [{ role: 'system', content: 'You are the President.' }, { role: 'user', content: 'What is the state of the Union?' }]

t.test('the OpenAI chat.completion shape', async (t) => {
  const body = await chatJson({ model: CHAT_MODEL, messages: QUESTION, max_tokens: 6, temperature: 0 })
  t.match(body, { object: 'chat.completion', model: CHAT_MODEL, choices: [{ index: 0, message: { role: 'assistant', content: String }, finish_reason: 'length' }] })
  t.match(body.id, /^chatcmpl-/)
  t.equal(body.usage.completion_tokens, 6)
  t.equal(body.usage.total_tokens, body.usage.prompt_tokens + 6)
  t.ok(body.choices[0].message.content.length > 0)
})

t.test('streamed and not, the same seeded text; chunks carry deltas, then finish, usage and [DONE]', async (t) => {
  const req = { messages: QUESTION, max_tokens: 14, temperature: 0.9, seed: 11 }
  const plain = await chatJson(req)
  const events = await readSse(await chat({ ...req, stream: true, stream_options: { include_usage: true } }))
  t.equal(events[events.length - 1].data, '[DONE]')
  const chunks = events.slice(0, -1).map((e) => e.data)
  t.ok(chunks.every((c: Json) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id))
  t.same(chunks[0].choices[0].delta, { role: 'assistant', content: '' })
  t.same(chunks[chunks.length - 1].choices, [])
  t.same(chunks[chunks.length - 1].usage, plain.usage)
  const finish = chunks[chunks.length - 2].choices[0]
  t.same(finish.delta, {})
  t.equal(finish.finish_reason, plain.choices[0].finish_reason)
  const text = chunks.slice(1, -2).map((c: Json) => c.choices[0].delta.content).join('')
  t.equal(text, plain.choices[0].message.content)
  t.ok(chunks.slice(1, -2).length > 1, 'the text came in pieces')
})

t.test('text content parts read as their text', async (t) => {
  const parts = [{ role: 'user', content: [{ type: 'text', text: 'What is the state' }, { type: 'text', text: 'of the Union?' }] }]
  const joined = [{ role: 'user', content: 'What is the state\nof the Union?' }]
  const a = await chatJson({ messages: parts, max_tokens: 8, temperature: 0 })
  const b = await chatJson({ messages: joined, max_tokens: 8, temperature: 0 })
  t.equal(a.choices[0].message.content, b.choices[0].message.content)
  t.equal(a.usage.prompt_tokens, b.usage.prompt_tokens)
})

/** A session's first turn, its reply, a second turn: what one call over the whole conversation gives. */
t.test('two greedy turns on a session equal one call over the whole conversation, across a restart too', async (t) => {
  const dataDir = join(srv.dataDir, '..', 'restart-data')
  const first = await chatServer(dataDir)
  const session = await (await postJson(`${first.url}/v1/sessions`, { model: CHAT_MODEL })).json()
  const turn1 = await chatJson({ session_id: session.id, messages: QUESTION, max_tokens: 10, temperature: 0 }, first)
  t.equal(turn1.session_id, session.id)
  await first.close()

  const second = await chatServer(dataDir)
  t.teardown(second.close)
  const conversation = [...QUESTION, turn1.choices[0].message, { role: 'user', content: 'And the economy?' }]
  const turn2 = await chatJson({ session_id: session.id, messages: conversation, max_tokens: 12, temperature: 0 }, second)
  const whole = await chatJson({ messages: conversation, max_tokens: 12, temperature: 0 }, second)
  t.equal(turn2.choices[0].message.content, whole.choices[0].message.content)
  // The session fed the first prompt, its reply's tokens (the last one pending until turn 2, so
  // counted in both turns) and then only what followed the reply: together, the whole prompt.
  t.equal(turn1.usage.prompt_tokens + turn1.usage.completion_tokens - 1 + turn2.usage.prompt_tokens, whole.usage.prompt_tokens)
  t.ok(turn2.usage.prompt_tokens < whole.usage.prompt_tokens / 2, 'the second turn did not re-read the history')

  const turn3 = await chatJson({ session_id: session.id, messages: [...conversation, turn2.choices[0].message, { role: 'user', content: 'Thank you.' }], max_tokens: 5, temperature: 0 }, second)
  const whole3 = await chatJson({ messages: [...conversation, turn2.choices[0].message, { role: 'user', content: 'Thank you.' }], max_tokens: 5, temperature: 0 }, second)
  t.equal(turn3.choices[0].message.content, whole3.choices[0].message.content, 'and a third turn')
})

// The tiny model's greedy text barely depends on its context; a seeded sample does (the control
// below), so it shows the session's state is the whole conversation's. No repetition penalty: it
// sees only the tokens a generation is fed, which on a session is the turn's new part.
t.test('a seeded sampled turn on a session equals the same sample over the whole conversation', async (t) => {
  const session = await (await postJson(`${srv.url}/v1/sessions`, { model: CHAT_MODEL })).json()
  const turn1 = await chatJson({ session_id: session.id, messages: QUESTION, max_tokens: 8, temperature: 0 })
  const conversation = [...QUESTION, turn1.choices[0].message, { role: 'user', content: 'And the economy?' }]
  const sampled = { max_tokens: 16, temperature: 1, seed: 3, repetition_penalty: 1 }
  const turn2 = await chatJson({ session_id: session.id, messages: conversation, ...sampled })
  const whole = await chatJson({ messages: conversation, ...sampled })
  t.equal(turn2.choices[0].message.content, whole.choices[0].message.content)
  const other = await chatJson({ messages: [...conversation.slice(0, 3), { role: 'user', content: 'And the army?' }], ...sampled })
  t.not(other.choices[0].message.content, whole.choices[0].message.content, 'control: the sample depends on the conversation')
})

t.test('a chat session refuses conversations that do not continue it, naming the field', async (t) => {
  const session = await (await postJson(`${srv.url}/v1/sessions`, { model: CHAT_MODEL })).json()
  const turn1 = await chatJson({ session_id: session.id, messages: QUESTION, max_tokens: 4, temperature: 0 })
  const reply = turn1.choices[0].message
  const edited = await chat({ session_id: session.id, messages: [QUESTION[0], { role: 'user', content: 'Something else?' }, reply, { role: 'user', content: 'Go on.' }], max_tokens: 2 })
  t.equal(edited.status, 422)
  t.match(await edited.json(), { error: { param: 'messages', message: /do not render as they did/ } })
  const otherReply = await chat({ session_id: session.id, messages: [...QUESTION, { role: 'assistant', content: 'No.' }, { role: 'user', content: 'Go on.' }], max_tokens: 2 })
  t.match(await otherReply.json(), { error: { param: 'messages.2.content', message: /differs from the reply the session generated/ } })
  t.equal((await postJson(`${srv.url}/v1/sessions/${session.id}/completions`, { prompt: ' more', max_tokens: 2 })).status, 200)
  const used = await chat({ session_id: session.id, messages: [...QUESTION, reply, { role: 'user', content: 'Go on.' }], max_tokens: 2 })
  t.equal(used.status, 422)
  t.match(await used.json(), { error: { param: 'session_id', message: /did not come from its chat turns/ } })
  t.equal((await chat({ session_id: 'sess_nope', messages: QUESTION })).status, 404)
})

t.test('a model without a chat template: 422 naming model', async (t) => {
  const res = await chat({ model: 'tiny-t2r', messages: QUESTION })
  t.equal(res.status, 422)
  t.match(await res.json(), { error: { param: 'model', message: /model tiny-t2r has no chat template \(its tokenizer_config\.json has no chat_template\): use \/v1\/completions/ } })
})

t.test('bad messages: 422 naming the field', async (t) => {
  const cases: Array<[unknown, string]> = [
    [[], 'messages'],
    [[{ role: 'wizard', content: 'Hi' }], 'messages.0.role'],
    [[{ role: 'user', content: 'Hi' }, { role: 'user', content: 42 }], 'messages.1.content'],
    [[{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }], 'messages.0.content.0'],
    [[{ role: 'user' }], 'messages.0.content'],
    [undefined, 'messages']
  ]
  for (const [messages, param] of cases) {
    const res = await chat({ messages, max_tokens: 2 })
    t.equal(res.status, 422, JSON.stringify(messages))
    const body = await res.json()
    t.equal(body.error.param, param, body.error.message)
  }
  const logprobs = await chat({ messages: QUESTION, logprobs: true })
  t.match(await logprobs.json(), { error: { param: 'logprobs' } })
})
