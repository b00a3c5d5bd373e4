// The chat turn records of disk sessions (turns.ts; the Redis store keeps them in the session's
// hash), one small JSON file per session beside the session files, written atomically after each
// turn so a restart can continue a chat. Records of sessions that no longer exist are removed when
// the store opens.
import { mkdirSync, readdirSync, rmSync } from 'node:fs'
import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import type { ChatTurnRecord } from './turns.ts'

const RecordSchema = Type.Object({
  messages: Type.Integer({ minimum: 0 }),
  promptLength: Type.Integer({ minimum: 0 }),
  promptSha256: Type.String(),
  reply: Type.String(),
  endedOnTurnEnd: Type.Boolean(),
  tokens: Type.Integer({ minimum: 0 })
})

/** A stored record, or null if it is not one (unreadable records are treated as absent). */
export function parseTurnRecord (json: string): ChatTurnRecord | null {
  try {
    const value: unknown = JSON.parse(json)
    return Value.Check(RecordSchema, value) ? value : null
  } catch {
    return null
  }
}

export class ChatTurnStore {
  constructor (private readonly dir: string, sessionExists: (id: string) => boolean) {
    mkdirSync(dir, { recursive: true })
    for (const name of readdirSync(dir)) {
      const id = name.replace(/\.json(\.tmp)?$/, '')
      if (name.endsWith('.tmp') || !sessionExists(id)) rmSync(join(dir, name), { force: true })
    }
  }

  /** The session's last chat turn, or null if it has none (or its record is unreadable). */
  async get (sessionId: string): Promise<ChatTurnRecord | null> {
    try {
      return parseTurnRecord(await readFile(this.file(sessionId), 'utf8'))
    } catch {
      return null
    }
  }

  async put (sessionId: string, record: ChatTurnRecord): Promise<void> {
    const tmp = `${this.file(sessionId)}.tmp`
    await writeFile(tmp, JSON.stringify(record))
    await rename(tmp, this.file(sessionId))
  }

  private file (sessionId: string): string { return join(this.dir, `${sessionId}.json`) }
}
