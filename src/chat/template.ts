// A model's chat template (tokenizer_config.json's `chat_template`), rendered the way transformers'
// apply_chat_template does: Jinja (npm @huggingface/jinja, made for these templates) over the
// messages, the special-token strings and add_generation_prompt. The rendering is tokenized as text
// with its special tokens written out, and no BOS is added beyond what the template writes.
import { Template } from '@huggingface/jinja'

export type ChatRole = 'system' | 'user' | 'assistant'
export const CHAT_ROLES: readonly ChatRole[] = ['system', 'user', 'assistant']

export interface ChatMessage {
  role: ChatRole
  content: string
}

export interface ChatTemplate {
  /** The conversation rendered up to the opening of the assistant's next turn (add_generation_prompt). */
  render (messages: readonly ChatMessage[]): string
  /** The special token the template closes an assistant turn with (<|im_end|>, <|eot_id|>, </s>), if any. */
  readonly endOfTurn: { id: number, text: string } | null
}

/** Stands in for an assistant reply while finding out what the template writes after one. */
const REPLY = 'T2RPROBEREPLY'

/**
 * Compiles a template; throws (with the parser's message) if @huggingface/jinja cannot read it.
 * `strings` are bos_token, eos_token...; `specialTokens` the tokenizer's special tokens by text.
 */
export function compileChatTemplate (source: string, strings: Readonly<Record<string, string>>, specialTokens: ReadonlyMap<string, number>): ChatTemplate {
  const template = new Template(source)
  const render = (messages: readonly ChatMessage[], addGenerationPrompt: boolean): string =>
    template.render({ ...strings, messages: messages.map((m) => ({ role: m.role, content: m.content })), add_generation_prompt: addGenerationPrompt })
  return {
    render: (messages) => render(messages, true),
    endOfTurn: endOfTurn(render, specialTokens)
  }
}

/**
 * The end-of-turn token, found by rendering a user message and an assistant reply: the longest
 * special token the template writes right after the reply (spaces aside, as Llama 2 puts one).
 */
function endOfTurn (render: (messages: readonly ChatMessage[], addGenerationPrompt: boolean) => string, specialTokens: ReadonlyMap<string, number>): ChatTemplate['endOfTurn'] {
  let text: string
  try {
    text = render([{ role: 'user', content: 'Hello' }, { role: 'assistant', content: REPLY }], false)
  } catch {
    return null // a template that refuses this conversation marks no turns we can find
  }
  const at = text.lastIndexOf(REPLY)
  if (at === -1) return null
  const after = text.slice(at + REPLY.length).trimStart()
  let found: ChatTemplate['endOfTurn'] = null
  for (const [token, id] of specialTokens) {
    if (token !== '' && after.startsWith(token) && (found === null || token.length > found.text.length)) found = { id, text: token }
  }
  return found
}
