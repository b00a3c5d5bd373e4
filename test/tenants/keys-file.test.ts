// Keys from a file of hashed entries made by scripts/hash-key.ts; a start without keys listens on
// loopback only, and a bad configuration stops the start with one line on stderr.
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { promisify } from 'node:util'
import t from 'tap'
import { ROOT, tinyModelsDir } from '../helpers/fixtures.ts'
import { spawnServer, startServer } from '../helpers/server.ts'
import { as, json } from '../helpers/tenants.ts'

const run = promisify(execFile)
const modelsDir = tinyModelsDir()
const scratch = mkdtempSync(join(tmpdir(), 't2r-keys-'))
t.teardown(() => { rmSync(scratch, { recursive: true, force: true }) })

/** Runs a TypeScript entry point of the repository; resolves with its exit code and output. */
async function node (script: string, args: string[], env: Record<string, string> = {}, input?: string): Promise<{ code: number, stdout: string, stderr: string }> {
  const child = run(process.execPath, ['--import', 'tsx', script, ...args], { cwd: ROOT, env: { ...process.env, ...env }, timeout: 120_000 }) // a server that wrongly starts is killed
  if (input !== undefined) { child.child.stdin!.end(input) }
  try {
    const { stdout, stderr } = await child
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number, stdout: string, stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

const BOB_KEY = 'bob-has-his-own-key-0123456789'
let aliceKey = ''
const keysFile = join(scratch, 'keys.jsonl')

t.test('hash-key prints entries; the file holds hashes, never a key', async (t) => {
  const alice = await node('scripts/hash-key.ts', ['--name', 'alice'])
  t.equal(alice.code, 0)
  aliceKey = /: (t2r-\S+)\n$/.exec(alice.stderr)?.[1] ?? ''
  t.match(aliceKey, /^t2r-[A-Za-z0-9_-]{43}$/, 'a new random key, shown once on stderr')
  const bob = await node('scripts/hash-key.ts', ['--name', 'bob', '--admin', '--stdin'], {}, BOB_KEY)
  t.equal(bob.code, 0)
  t.equal(bob.stderr, '')
  writeFileSync(keysFile, `# t2r-serve keys\n${alice.stdout}${bob.stdout}`)
  const text = readFileSync(keysFile, 'utf8')
  t.match(text, /"name":"alice","scope":"user","sha256":"[0-9a-f]{64}"/)
  t.match(text, /"name":"bob","scope":"admin"/)
  t.notOk(text.includes(aliceKey) || text.includes(BOB_KEY), 'no plaintext key in the file')
  const bad = await node('scripts/hash-key.ts', [])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /^hash-key: --name is required/)
})

t.test('a server with the keys file: each key is its named tenant with its scope', async (t) => {
  let log = ''
  const logStream = new Writable({ write (chunk, _encoding, done) { log += String(chunk); done() } })
  const srv = await startServer({ modelsDir, env: { T2R_API_KEYS_FILE: keysFile, LOG_LEVEL: 'info' }, logStream })
  t.teardown(srv.close)
  t.match(log, /API keys configured/)
  const session = await as(aliceKey, 'POST', `${srv.url}/v1/sessions`, {})
  t.equal(session.status, 201)
  t.equal((await session.json()).owner, 'alice', 'sessions are owned by the key\'s name')
  t.equal((await as(aliceKey, 'GET', `${srv.url}/v1/conversions`)).status, 403)
  t.equal((await as(BOB_KEY, 'GET', `${srv.url}/v1/conversions`)).status, 200)
  t.equal((await json(as(BOB_KEY, 'GET', `${srv.url}/v1/sessions`))).data[0].owner, 'alice', 'the admin sees alice\'s session')
  t.equal((await as('t2r-' + 'x'.repeat(43), 'GET', `${srv.url}/v1/models`)).status, 401)
})

t.test('without keys: a warning at start, and no listening beyond loopback', async (t) => {
  let log = ''
  const logStream = new Writable({ write (chunk, _encoding, done) { log += String(chunk); done() } })
  const srv = await startServer({ modelsDir, env: { LOG_LEVEL: 'warn' }, logStream, loadModels: false })
  await srv.close()
  t.match(log, /"level":40.*no API keys configured: authentication is off and the server listens on loopback only/)

  const env = { MODELS_DIR: modelsDir, DATA_DIR: join(scratch, 'data'), PORT: '0', T2R_API_KEYS: '', T2R_API_KEYS_FILE: '' }
  const open = await node('src/main.ts', [], { ...env, HOST: '0.0.0.0' })
  t.equal(open.code, 2)
  t.equal(open.stderr, 't2r-serve: refusing to listen on 0.0.0.0 without API keys: configure --api-keys-file or T2R_API_KEYS, or listen on 127.0.0.1\n', 'one line')
  const flag = await node('src/main.ts', ['--host', '::'], env)
  t.equal(flag.code, 2)
  t.match(flag.stderr, /refusing to listen on ::/)
})

t.test('bad keys configuration stops the start with one line naming the problem', async (t) => {
  const env = { MODELS_DIR: modelsDir, DATA_DIR: join(scratch, 'data'), PORT: '0', T2R_API_KEYS: '' }
  const plaintext = join(scratch, 'plaintext.jsonl')
  writeFileSync(plaintext, `${JSON.stringify({ name: 'carol', scope: 'user', key: 'carol-secret-key-0123456789' })}\n`)
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ T2R_API_KEYS_FILE: plaintext }, /plaintext\.jsonl:1: holds a plaintext "key"; keep only its "sha256"/],
    [{ T2R_API_KEYS_FILE: join(scratch, 'missing.jsonl') }, /missing\.jsonl cannot be read: ENOENT/],
    [{ T2R_API_KEYS: 'short' }, /T2R_API_KEYS: key 1 is shorter than 16 characters/],
    [{ T2R_CORS_ORIGINS: 'app.example.com' }, /cors origins: "app\.example\.com" is not an origin/]
  ]
  for (const [extra, message] of cases) {
    const res = await node('src/main.ts', [], { ...env, ...extra })
    t.equal(res.code, 2)
    t.match(res.stderr, message)
    t.equal(res.stderr.trim().split('\n').length, 1, 'one line')
  }
})

t.test('with keys the server may listen on every interface', async (t) => {
  const server = await spawnServer({ MODELS_DIR: modelsDir, DATA_DIR: join(scratch, 'data-open'), T2R_DEFAULT_MODEL: 'tiny-t2r', HOST: '0.0.0.0', T2R_API_KEYS_FILE: keysFile })
  t.teardown(async () => { await server.kill('SIGTERM') })
  t.equal((await as(aliceKey, 'GET', `${server.url}/v1/models`)).status, 200)
  t.equal((await as(null, 'GET', `${server.url}/v1/models`)).status, 401)
})
