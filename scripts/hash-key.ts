// Prints a keys-file line for an API key (docs/security.md). The file gets the key's SHA-256 only.
//   npx tsx scripts/hash-key.ts --name alice [--admin] >> keys.jsonl
//       makes a new random key: the key goes to stderr (shown once), the line to stdout
//   printf %s "$KEY" | npx tsx scripts/hash-key.ts --name ci --stdin >> keys.jsonl
//       the line for a key you already have (read from stdin, never from the command line)
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { generateKey, keyEntry, MIN_KEY_CHARS } from '../src/auth/keys.ts'

function fail (message: string): never {
  process.stderr.write(`hash-key: ${message}\n`)
  process.exit(2)
}

let values: { name?: string, admin?: boolean, stdin?: boolean }
try {
  ({ values } = parseArgs({ options: { name: { type: 'string' }, admin: { type: 'boolean' }, stdin: { type: 'boolean' } }, strict: true }))
} catch (err) {
  fail((err as Error).message)
}
if (values.name === undefined) fail('--name is required (the key\'s name: it owns the sessions made with the key)')
const key = values.stdin === true ? readFileSync(0, 'utf8').trim() : generateKey()
if (key.length < MIN_KEY_CHARS) fail(`the key on stdin is shorter than ${MIN_KEY_CHARS} characters`)
let line: string
try {
  line = JSON.stringify(keyEntry(values.name, values.admin === true ? 'admin' : 'user', key))
} catch (err) {
  fail(`--name: ${(err as Error).message}`)
}
if (values.stdin !== true) process.stderr.write(`API key for ${values.name} (shown once, store it now): ${key}\n`)
process.stdout.write(`${line}\n`)
