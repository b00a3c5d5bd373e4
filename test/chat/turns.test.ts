// The chat-session rule (src/chat/turns.ts) on real templates: a turn feeds what follows the
// session's last reply, and conversations that do not continue the session are refused by field.
import t from 'tap'
import { compileChatTemplate, type ChatMessage, type ChatTemplate } from '../../src/chat/template.ts'
import { textToFeed, turnRecord, type TurnInput } from '../../src/chat/turns.ts'
import { InvalidError } from '../../src/errors.ts'
import { specialIds, TEMPLATES } from './hf-templates.ts'

function compile (name: string): ChatTemplate {
  const real = TEMPLATES[name]
  return compileChatTemplate(real.source, real.strings, specialIds(real))
}

const first: ChatMessage[] = [{ role: 'user', content: 'Hello' }]
const second: ChatMessage[] = [...first, { role: 'assistant', content: 'Hi there' }, { role: 'user', content: 'Who are you?' }]
/** The first turn as a session takes it: 20 tokens in, the reply "Hi there" plus end-of-turn out. */
function afterFirstTurn (template: ChatTemplate, endedOnTurnEnd = true, reply = 'Hi there'): Omit<TurnInput, 'rendered' | 'messages'> {
  return { sessionId: 'sess_a', sessionTokens: 24, record: turnRecord(template.render(first), first.length, reply, endedOnTurnEnd, 24), endOfTurn: template.endOfTurn }
}

for (const name of ['Qwen/Qwen2-7B-Instruct', 'meta-llama/Meta-Llama-3-8B-Instruct', 'mistralai/Mistral-7B-Instruct-v0.2']) {
  t.test(`${name}: the state's text plus what the turn feeds is the whole conversation's rendering`, async (t) => {
    const template = compile(name)
    const eot = template.endOfTurn!.text
    const rendered = template.render(second)
    const feed = textToFeed({ ...afterFirstTurn(template), rendered, messages: second })
    t.equal(template.render(first) + 'Hi there' + eot + feed, rendered)
    const cut = textToFeed({ ...afterFirstTurn(template, false), rendered, messages: second })
    t.equal(cut, eot + feed, 'a reply cut short gets its end-of-turn token fed')
  })
}

t.test('Llama 2 writes " reply </s>": the state keeps the reply as generated, the feed starts after </s>', async (t) => {
  const template = compile('meta-llama/Llama-2-7b-chat-hf')
  const feed = textToFeed({ ...afterFirstTurn(template, true, ' Hi there'), rendered: template.render(second), messages: second })
  t.equal(feed, '<s>[INST] Who are you? [/INST]')
})

t.test('a fresh session takes the whole rendering', async (t) => {
  const template = compile('Qwen/Qwen2-7B-Instruct')
  const rendered = template.render(second)
  t.equal(textToFeed({ sessionId: 'sess_a', sessionTokens: 0, record: null, rendered, messages: second, endOfTurn: template.endOfTurn }), rendered)
})

t.test('conversations that do not continue the session are refused, naming the field', async (t) => {
  const template = compile('Qwen/Qwen2-7B-Instruct')
  const base = afterFirstTurn(template)
  const refuse = (input: TurnInput, param: string, message: RegExp): void => {
    t.throws(() => textToFeed(input), new InvalidError('', param), param)
    t.throws(() => textToFeed(input), { message }, param)
  }
  const edited: ChatMessage[] = [{ role: 'user', content: 'Hello!' }, ...second.slice(1)]
  refuse({ ...base, rendered: template.render(edited), messages: edited }, 'messages', /do not render as they did/)
  const otherReply: ChatMessage[] = [second[0], { role: 'assistant', content: 'Something else' }, second[2]]
  refuse({ ...base, rendered: template.render(otherReply), messages: otherReply }, 'messages.1.content', /differs from the reply the session generated/)
  const noReply: ChatMessage[] = [second[0], { role: 'user', content: 'Hi there' }, second[2]]
  refuse({ ...base, rendered: template.render(noReply), messages: noReply }, 'messages.1.role', /must be the assistant's reply/)
  refuse({ ...base, rendered: template.render(second.slice(0, 2)), messages: second.slice(0, 2) }, 'messages', /at least one new message/)
  refuse({ ...base, sessionTokens: 30, rendered: template.render(second), messages: second }, 'session_id', /did not come from its chat turns/)
  refuse({ ...base, record: null, rendered: template.render(second), messages: second }, 'session_id', /did not come from its chat turns/)
  refuse({ ...base, endOfTurn: null, rendered: template.render(second), messages: second }, 'session_id', /no end-of-turn token/)
  const spaced: ChatMessage[] = [second[0], { role: 'assistant', content: ' Hi there\n' }, second[2]]
  t.doesNotThrow(() => textToFeed({ ...base, rendered: template.render(spaced), messages: spaced }), 'whitespace around the reply is not an edit')
})
