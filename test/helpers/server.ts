// Starts a real server on a loopback port for a test, over a copy of the given models.
import { cpSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { DestinationStream } from 'pino'
import { loadConfig, type Config } from '../../src/config.ts'
import { buildServer, type Server } from '../../src/server.ts'

export interface TestServer {
  url: string
  server: Server
  config: Config
  modelsDir: string
  dataDir: string
  close (): Promise<void>
}

export interface StartOptions {
  modelsDir: string
  /** Copy the models so a test may add or break folders without touching the fixtures. */
  copyModels?: boolean
  dataDir?: string
  env?: Record<string, string>
  loadModels?: boolean
  /** Receives the server's log lines (set LOG_LEVEL in env: the default here is silent). */
  logStream?: DestinationStream
}

export async function startServer (options: StartOptions): Promise<TestServer> {
  const scratch = mkdtempSync(join(tmpdir(), 't2r-test-'))
  const modelsDir = options.copyModels === true ? join(scratch, 'models') : options.modelsDir
  if (options.copyModels === true) cpSync(options.modelsDir, modelsDir, { recursive: true })
  const dataDir = options.dataDir ?? join(scratch, 'data')
  const config = loadConfig([], {
    MODELS_DIR: modelsDir,
    DATA_DIR: dataDir,
    PORT: '0',
    LOG_LEVEL: 'silent',
    T2R_DEFAULT_MODEL: 'tiny-t2r',
    T2R_INTRA_OP_THREADS: '1',
    ...options.env
  })
  const server = await buildServer(config, { logStream: options.logStream })
  await server.app.listen({ host: '127.0.0.1', port: 0 })
  if (options.loadModels !== false) await server.loadModels()
  const address = server.app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    config,
    modelsDir,
    dataDir,
    close: async () => {
      await server.close()
      rmSync(scratch, { recursive: true, force: true })
    }
  }
}

export async function postJson (url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), ...init })
}

export { readSse } from './sse.ts'

export async function metricValue (url: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels === '' ? ' ' : `{${labels}}`}`) || (labels === '' && l.startsWith(`${name}{`)))
  return line === undefined ? NaN : Number(line.split(' ').pop())
}

/** A loopback port nothing listens on right now, for a child process to listen on. */
export async function freePort (): Promise<number> {
  const { createServer } = await import('node:net')
  return await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => { resolve(p) }) })
  })
}

/** A server in its own process (`tsx src/main.ts`), for tests that kill it. */
export async function spawnServer (env: Record<string, string>): Promise<{ url: string, kill: (signal: NodeJS.Signals) => Promise<void>, signal: (signal: NodeJS.Signals) => void }> {
  const { spawn } = await import('node:child_process')
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { ...process.env, PORT: String(port), LOG_LEVEL: 'warn', T2R_INTRA_OP_THREADS: '1', ...env },
    stdio: ['ignore', 'ignore', 'inherit']
  })
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; i < 300; i++) {
    try { if ((await fetch(`${url}/ready`)).status === 200) break } catch { /* not listening yet */ }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return {
    url,
    kill: async (signal) => {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill(signal)
      await exited
    },
    /** Sends a signal without waiting for an exit (SIGSTOP / SIGCONT: a replica that stalls). */
    signal: (signal) => { child.kill(signal) }
  }
}
