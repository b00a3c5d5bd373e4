// Special tokens from the model folder, end to end: BOS starts a document exactly once (and never
// for the byte-level models, which have none), generation stops on any of the EOS ids, and text
// generated at a document's start drops SentencePiece's prepended space as a one-shot decode does.
import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Template } from '@huggingface/jinja'
import t from 'tap'
import { loadTokenizer } from '../../src/tokenizer/tokenizer.ts'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { CHAT_MODEL, CHATML_TEMPLATE, hfModelsDir } from '../helpers/hf-fixtures.ts'
import { postJson, startServer } from '../helpers/server.ts'

type Json = any // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON bodies

const srv = await startServer({ modelsDir: hfModelsDir(), copyModels: true, loadModels: false, env: { T2R_DEFAULT_MODEL: CHAT_MODEL } })
t.teardown(srv.close)
cpSync(join(tinyModelsDir(), 'tiny-t2r'), join(srv.modelsDir, 'tiny-t2r'), { recursive: true })
await srv.server.loadModels()
const sp = loadTokenizer(join(srv.modelsDir, CHAT_MODEL, 'tokenizer.json'))
const byteLevel = loadTokenizer(join(srv.modelsDir, 'tiny-t2r', 'tokenizer.json'))
const BOS = 1

async function generate (inputs: string, parameters: object = {}): Promise<Json> {
  const res = await postJson(`${srv.url}/generate`, { inputs, parameters: { max_new_tokens: 6, details: true, decoder_input_details: true, ...parameters } })
  if (res.status !== 200) throw new Error(`${res.status}: ${await res.text()}`)
  return await res.json()
}
const ids = (tokens: Array<{ id: number }>): number[] => tokens.map((x) => x.id)
const count = (xs: number[], x: number): number => xs.filter((y) => y === x).length

t.test('a text prompt starts with BOS once; a byte-level model gets none', async (t) => {
  const text = 'The state of the Union'
  t.same(ids((await generate(text)).details.prefill), [BOS, ...await sp.encode(text)])
  t.same(ids((await generate(text, { model: 'tiny-t2r' })).details.prefill), await byteLevel.encode(text))
})

t.test('on a session, BOS only at its start', async (t) => {
  const session = await (await postJson(`${srv.url}/v1/sessions`, { model: CHAT_MODEL })).json()
  const first = ids((await generate('The Congress', { session_id: session.id })).details.prefill)
  const second = ids((await generate(' and the people', { session_id: session.id })).details.prefill)
  t.equal(first[0], BOS)
  t.equal(count(first, BOS), 1)
  t.equal(count(second, BOS), 0, 'the second turn feeds its pending token and its prompt, no BOS')
})

t.test('a chat prompt has the one BOS its template writes, none added', async (t) => {
  const messages = [{ role: 'user', content: 'What of the Union?' }]
  const rendered = new Template(CHATML_TEMPLATE).render({ messages, add_generation_prompt: true, bos_token: '<s>', eos_token: '</s>' })
  const expected = await sp.encode(rendered)
  t.equal(expected[0], BOS)
  t.equal(count(expected, BOS), 1)
  const body = await (await postJson(`${srv.url}/v1/chat/completions`, { messages, max_tokens: 2, temperature: 0 })).json()
  t.equal(body.usage.prompt_tokens, expected.length)
})

t.test('an empty prompt starts from BOS; the text generated there drops the first word\'s space', async (t) => {
  const fromStart = await generate('', { max_new_tokens: 10 })
  t.same(ids(fromStart.details.prefill), [BOS])
  const generated = ids(fromStart.details.tokens)
  t.equal(fromStart.generated_text, sp.decode(generated), 'as the one-shot decode of a document')
  const continued = await generate('The state', { max_new_tokens: 10 })
  const bytes = Buffer.concat(ids(continued.details.tokens).map((id) => sp.tokenBytes(id))).toString('utf8')
  t.equal(continued.generated_text, bytes, 'after a prompt the space separating the next word is kept')
  t.match(continued.generated_text, /^ /)
})

t.test('generation stops on either EOS id: the manifest\'s list, or generation_config.json\'s', async (t) => {
  // The greedy continuation's second token becomes an EOS id of two copies of the model.
  const prompt = 'The state of the Union'
  const greedy = ids((await generate(prompt, { max_new_tokens: 3 })).details.tokens)
  t.not(greedy[1], greedy[0])
  const stop = greedy[1]
  const copy = (name: string, edit: (manifest: Json, folder: string) => void): void => {
    const folder = join(srv.modelsDir, name)
    cpSync(join(srv.modelsDir, CHAT_MODEL), folder, { recursive: true })
    const manifest = JSON.parse(readFileSync(join(folder, 'model.json'), 'utf8'))
    edit(manifest, folder)
    writeFileSync(join(folder, 'model.json'), JSON.stringify({ ...manifest, name }))
  }
  copy('eos-first', (m) => { m.eos_token_id = stop; m.eos_token_ids = [stop, 2] })
  copy('eos-second', (m, folder) => {
    delete m.eos_token_ids
    writeFileSync(join(folder, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: [2, stop] }))
  })
  for (const model of ['eos-first', 'eos-second']) {
    await srv.server.services.registry.load(model)
    const out = await generate(prompt, { model, max_new_tokens: 3 })
    t.equal(out.details.finish_reason, 'eos_token', model)
    t.same(ids(out.details.tokens), [greedy[0], stop])
    t.equal(out.details.tokens[1].special, true)
    t.equal(out.generated_text, out.details.tokens[0].text, 'the EOS token adds no text')
    const ignored = await generate(prompt, { model, max_new_tokens: 3, ignore_eos: true })
    t.equal(ignored.details.finish_reason, 'length', `${model} with ignore_eos`)
  }
  const chat = await (await postJson(`${srv.url}/v1/chat/completions`, { model: 'eos-second', messages: [{ role: 'user', content: prompt }], max_tokens: 40, temperature: 0 })).json()
  t.equal(chat.choices[0].finish_reason, 'stop', 'chat stops there too')
  t.ok(chat.usage.completion_tokens < 40)
})
