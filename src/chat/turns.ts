// Chat on a session: the rule that lets a turn feed only what is new.
//
// A client sends the whole conversation every turn, as with any OpenAI chat API. The session's
// state already holds the conversation up to the end of its last reply, so the server renders the
// whole conversation and feeds only the part after that reply's end-of-turn token. It checks, and
// refuses with 422 otherwise, that the conversation continues the session:
//   - the session was used by chat turns alone since (the tokens it holds are those of its last turn),
//   - messages[0..n) render exactly as they did when the session consumed them (n = the messages of
//     its last turn; a template that re-renders earlier turns differently cannot continue a state),
//   - messages[n] is the assistant's reply the session generated (compared without surrounding
//     whitespace, as templates often trim it), and at least one message follows it.
// The state holds the reply as the model generated it, then its end-of-turn token: if the reply
// ended on that token it is pending in the session and the feed starts after it; otherwise (cut by
// max_tokens, a stop string or another EOS) the feed starts with it. For greedy decoding a turn then
// equals one call over the whole conversation whenever the reply's tokens are those its text
// tokenizes to (tested).
import { createHash } from 'node:crypto'
import { InvalidError } from '../errors.ts'
import type { ChatMessage, ChatTemplate } from './template.ts'

export interface ChatTurnRecord {
  /** Messages rendered into the session's last prompt; the reply to them comes next. */
  messages: number
  /** Length and SHA-256 of that rendering: the next turn's rendering must start with it. */
  promptLength: number
  promptSha256: string
  /** The text the session generated in reply. */
  reply: string
  /** The reply ended with the template's end-of-turn token (pending in the session's state). */
  endedOnTurnEnd: boolean
  /** Tokens the session held after the turn (consumed and pending). */
  tokens: number
}

export interface TurnInput {
  sessionId: string
  /** Tokens the session holds now (consumed and pending). */
  sessionTokens: number
  record: ChatTurnRecord | null
  rendered: string
  messages: readonly ChatMessage[]
  endOfTurn: ChatTemplate['endOfTurn']
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex')

/** The text a chat turn feeds its session: all of the rendering at the session's start, else what follows its last reply. */
export function textToFeed (t: TurnInput): string {
  if (t.sessionTokens === 0) return t.rendered
  const { record, endOfTurn } = t
  if (record === null || record.tokens !== t.sessionTokens) {
    throw new InvalidError(`session ${t.sessionId} holds ${t.sessionTokens} tokens that did not come from its chat turns (a prompt, a completion, a fork or an import): chat continues only sessions that chat alone has used`, 'session_id')
  }
  if (endOfTurn === null) throw new InvalidError('the model\'s chat template marks no end-of-turn token, so a chat session cannot continue past its first turn', 'session_id')
  const n = record.messages
  if (t.messages.length < n + 2) {
    throw new InvalidError(`session ${t.sessionId} has consumed ${n} messages: send them, its reply as messages[${n}], and at least one new message`, 'messages')
  }
  const reply = t.messages[n]
  if (reply.role !== 'assistant') throw new InvalidError(`messages[${n}] must be the assistant's reply from the session's last turn`, `messages.${n}.role`)
  const replyText = record.reply.trim()
  if (reply.content.trim() !== replyText) {
    throw new InvalidError(`messages[${n}].content differs from the reply the session generated; a session's history cannot be edited (start a new session)`, `messages.${n}.content`)
  }
  if (t.rendered.length < record.promptLength || sha256(t.rendered.slice(0, record.promptLength)) !== record.promptSha256) {
    throw new InvalidError(`messages[0..${n}) do not render as they did when session ${t.sessionId} consumed them (edited history, or a template that renders earlier turns differently later)`, 'messages')
  }
  const rest = t.rendered.slice(record.promptLength)
  const replyAt = replyText === '' ? -1 : rest.indexOf(replyText)
  const end = rest.indexOf(endOfTurn.text, replyAt === -1 ? 0 : replyAt + replyText.length)
  if (end === -1) throw new InvalidError(`the chat template wrote no ${endOfTurn.text} after messages[${n}]`, 'messages')
  return rest.slice(record.endedOnTurnEnd ? end + endOfTurn.text.length : end)
}

/** What a session remembers of a chat turn it has just taken. */
export function turnRecord (rendered: string, messages: number, reply: string, endedOnTurnEnd: boolean, tokens: number): ChatTurnRecord {
  return { messages, promptLength: rendered.length, promptSha256: sha256(rendered), reply, endedOnTurnEnd, tokens }
}
