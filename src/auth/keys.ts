// API keys: where they come from (a file of hashed entries, or T2R_API_KEYS) and checking a
// presented key. Keys are kept and compared only as SHA-256 digests: the keys file never holds a
// key, and plaintext keys from the environment are hashed as the configuration is read. A plain
// SHA-256 suffices because keys are random (generateKey: 256 bits), not passwords.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Tenant } from './tenant.ts'

export interface ApiKey {
  name: string
  admin: boolean
  sha256: Buffer
}

export type Scope = 'user' | 'admin'

/** One keys-file entry (a line of the file). */
export interface KeyEntry {
  name: string
  scope: Scope
  sha256: string
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/
const SHA256_HEX = /^[0-9a-f]{64}$/
const ENTRY_FIELDS = ['name', 'scope', 'sha256']
/** Shorter keys from T2R_API_KEYS are refused: they are guessable. */
export const MIN_KEY_CHARS = 16

export const hashKey = (key: string): string => createHash('sha256').update(key, 'utf8').digest('hex')

/** A new random key: 32 bytes, base64url, with a prefix that makes it recognisable in a leak scan. */
export const generateKey = (): string => `t2r-${randomBytes(32).toString('base64url')}`

export function keyEntry (name: string, scope: Scope, key: string): KeyEntry {
  if (!NAME.test(name)) throw new Error(`name must match ${String(NAME)}, got ${JSON.stringify(name)}`)
  return { name, scope, sha256: hashKey(key) }
}

function parseEntry (value: unknown, where: string): ApiKey {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${where}: expected an object {"name", "scope", "sha256"}`)
  const e = value as Record<string, unknown>
  if ('key' in e) throw new Error(`${where}: holds a plaintext "key"; keep only its "sha256" (scripts/hash-key.ts prints it)`)
  const extra = Object.keys(e).find((k) => !ENTRY_FIELDS.includes(k))
  if (extra !== undefined) throw new Error(`${where}: unknown field ${JSON.stringify(extra)}`)
  if (typeof e.name !== 'string' || !NAME.test(e.name)) throw new Error(`${where}: name must match ${String(NAME)}`)
  if (e.scope !== 'user' && e.scope !== 'admin') throw new Error(`${where}: scope must be "user" or "admin"`)
  if (typeof e.sha256 !== 'string' || !SHA256_HEX.test(e.sha256)) throw new Error(`${where}: sha256 must be 64 lowercase hex digits`)
  return { name: e.name, admin: e.scope === 'admin', sha256: Buffer.from(e.sha256, 'hex') }
}

/** A keys file: a JSON array of entries, or one JSON entry a line (blank lines and `#` comments skipped). */
export function parseKeysFile (text: string, file: string): ApiKey[] {
  if (text.trimStart().startsWith('[')) {
    let entries: unknown
    try {
      entries = JSON.parse(text)
    } catch (err) {
      throw new Error(`${file}: not valid JSON: ${(err as Error).message}`)
    }
    if (!Array.isArray(entries)) throw new Error(`${file}: expected a JSON array of entries`)
    return entries.map((e, i) => parseEntry(e, `${file} entry ${i + 1}`))
  }
  const keys: ApiKey[] = []
  text.split('\n').forEach((line, i) => {
    const l = line.trim()
    if (l === '' || l.startsWith('#')) return
    let value: unknown
    try {
      value = JSON.parse(l)
    } catch {
      throw new Error(`${file}:${i + 1}: not a JSON entry (lines look like {"name":"alice","scope":"user","sha256":"…"})`)
    }
    keys.push(parseEntry(value, `${file}:${i + 1}`))
  })
  return keys
}

/**
 * T2R_API_KEYS: comma-separated plaintext keys; an `admin:` prefix gives one the admin scope. Each
 * is named `key-` + the first 8 hex digits of its hash, so its sessions keep their owner across
 * restarts without the key's name being configured anywhere.
 */
export function parseEnvKeys (list: string): ApiKey[] {
  return list.split(',').map((s) => s.trim()).filter((s) => s !== '').map((item, i) => {
    const admin = item.startsWith('admin:')
    const key = admin ? item.slice('admin:'.length) : item
    if (key.length < MIN_KEY_CHARS) throw new Error(`T2R_API_KEYS: key ${i + 1} is shorter than ${MIN_KEY_CHARS} characters`)
    const sha256 = hashKey(key)
    return { name: `key-${sha256.slice(0, 8)}`, admin, sha256: Buffer.from(sha256, 'hex') }
  })
}

/** Every configured key; names and keys must be unique. Empty: authentication is off. */
export function loadApiKeys (file: string | undefined, envList: string | undefined): ApiKey[] {
  let fromFile: ApiKey[] = []
  if (file !== undefined && file !== '') {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      throw new Error(`api keys file ${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    fromFile = parseKeysFile(text, file)
    if (fromFile.length === 0) throw new Error(`api keys file ${file} has no entries`)
  }
  const keys = [...fromFile, ...parseEnvKeys(envList ?? '')]
  const names = new Set<string>()
  const digests = new Set<string>()
  for (const k of keys) {
    if (names.has(k.name)) throw new Error(`api key name ${k.name} is used twice`)
    if (digests.has(k.sha256.toString('hex'))) throw new Error(`api key ${k.name} is configured twice`)
    names.add(k.name)
    digests.add(k.sha256.toString('hex'))
  }
  return keys
}

export class KeyRing {
  constructor (private readonly keys: readonly ApiKey[]) {}

  get enabled (): boolean { return this.keys.length > 0 }

  /**
   * The tenant of a presented key, or null for an unknown one. Digests are compared in constant
   * time, and every entry is compared, so the time taken says nothing about which one matched.
   */
  identify (presented: string): Tenant | null {
    const digest = createHash('sha256').update(presented, 'utf8').digest()
    let found: ApiKey | null = null
    for (const k of this.keys) {
      if (timingSafeEqual(digest, k.sha256) && found === null) found = k
    }
    return found === null ? null : { key: found.name, admin: found.admin }
  }
}
