// Real Hugging Face chat templates through compileChatTemplate (npm @huggingface/jinja): each
// renders a conversation as transformers' apply_chat_template does, and the end-of-turn token is
// found from the template itself.
import t from 'tap'
import { compileChatTemplate, type ChatMessage } from '../../src/chat/template.ts'
import { specialIds, TEMPLATES } from './hf-templates.ts'

const CONVERSATION: ChatMessage[] = [
  { role: 'user', content: 'Hello' },
  { role: 'assistant', content: 'Hi there' },
  { role: 'user', content: 'Who are you?' }
]

const EXPECTED: Record<string, { rendered: string, endOfTurn: string }> = {
  'meta-llama/Meta-Llama-3-8B-Instruct': {
    rendered: '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    endOfTurn: '<|eot_id|>'
  },
  'meta-llama/Llama-3.1-8B-Instruct': {
    rendered: '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    endOfTurn: '<|eot_id|>'
  },
  'mistralai/Mistral-7B-Instruct-v0.2': {
    rendered: '<s>[INST] Hello [/INST]Hi there</s>[INST] Who are you? [/INST]',
    endOfTurn: '</s>'
  },
  'Qwen/Qwen2-7B-Instruct': {
    rendered: '<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n',
    endOfTurn: '<|im_end|>'
  },
  'meta-llama/Llama-2-7b-chat-hf': {
    rendered: '<s>[INST] Hello [/INST] Hi there </s><s>[INST] Who are you? [/INST]',
    endOfTurn: '</s>'
  },
  'google/gemma-7b-it': {
    rendered: '<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are you?<end_of_turn>\n<start_of_turn>model\n',
    endOfTurn: '<end_of_turn>'
  }
}

for (const [name, real] of Object.entries(TEMPLATES)) {
  t.test(`${name}: renders like apply_chat_template and ends turns with ${EXPECTED[name].endOfTurn}`, async (t) => {
    const ids = specialIds(real)
    const template = compileChatTemplate(real.source, real.strings, ids)
    t.equal(template.render(CONVERSATION), EXPECTED[name].rendered)
    t.same(template.endOfTurn, { id: ids.get(EXPECTED[name].endOfTurn), text: EXPECTED[name].endOfTurn })
  })
}

t.test('a system message where the template refuses one: the template\'s own message', async (t) => {
  const real = TEMPLATES['google/gemma-7b-it']
  const template = compileChatTemplate(real.source, real.strings, specialIds(real))
  t.throws(() => template.render([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }]), { message: /System role not supported/ })
})

t.test('Llama 2 folds a system message into the first instruction', async (t) => {
  const real = TEMPLATES['meta-llama/Llama-2-7b-chat-hf']
  const template = compileChatTemplate(real.source, real.strings, specialIds(real))
  t.equal(template.render([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello' }]), '<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello [/INST]')
})

t.test('a template that writes no special token after a reply has no end-of-turn token', async (t) => {
  const template = compileChatTemplate("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n\\n' }}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}", {}, new Map([['</s>', 2]]))
  t.equal(template.render([{ role: 'user', content: 'Hi' }]), 'user: Hi\n\nassistant: ')
  t.equal(template.endOfTurn, null)
})

t.test('a template @huggingface/jinja cannot parse throws at compile time', async (t) => {
  t.throws(() => compileChatTemplate('{% for m in messages %}{{ m.content }', {}, new Map()))
})
