// A real Redis (Debian's redis-server, installed by scripts/setup.sh) on a free loopback port, in its
// own scratch folder, for the scale-out tests. It can be killed and restarted on the same port and
// folder, with its append-only file, to check what survives.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './server.ts'

export const REDIS_BIN = '/usr/bin/redis-server'

export interface RunningRedis {
  url: string
  port: number
  /** Stops it the hard way (SIGKILL): what a crashed machine does. */
  kill: () => Promise<void>
  /** Starts it again on the same port and folder (its AOF, if on, is replayed). */
  restart: () => Promise<void>
  stop: () => Promise<void>
}

export interface RedisOptions {
  /** appendonly yes, fsync always: every acknowledged write survives a kill. */
  aof?: boolean
}

const DEADLINE_MS = 20_000

async function ping (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => { socket.write('PING\r\n') })
    socket.setEncoding('utf8')
    socket.once('data', (d: string) => { socket.destroy(); resolve(d.startsWith('+PONG')) })
    socket.once('error', () => { resolve(false) })
  })
}

export async function startRedis (options: RedisOptions = {}): Promise<RunningRedis> {
  if (!existsSync(REDIS_BIN)) throw new Error(`${REDIS_BIN} is missing: run scripts/setup.sh (it installs Debian's redis-server package)`)
  const dir = mkdtempSync(join(tmpdir(), 't2r-redis-'))
  const port = await freePort()
  let child: ChildProcess | null = null
  let log = ''

  const launch = async (): Promise<void> => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--daemonize', 'no',
      '--appendonly', options.aof === true ? 'yes' : 'no', '--appendfsync', 'always']
    const c = spawn(REDIS_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    c.stdout?.setEncoding('utf8').on('data', (s: string) => { log = (log + s).slice(-4000) })
    c.stderr?.setEncoding('utf8').on('data', (s: string) => { log = (log + s).slice(-4000) })
    let exited = false
    c.once('exit', () => { exited = true })
    child = c
    const deadline = Date.now() + DEADLINE_MS
    while (!(await ping(port))) {
      if (exited) throw new Error(`redis-server exited at start:\n${log}`)
      if (Date.now() > deadline) throw new Error(`redis-server not answering PING after ${DEADLINE_MS / 1000} s:\n${log}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  const signal = async (sig: NodeJS.Signals): Promise<void> => {
    const c = child
    child = null
    if (c === null || c.exitCode !== null || c.signalCode !== null) return
    const exited = new Promise((resolve) => c.once('exit', resolve))
    c.kill(sig)
    await exited
  }

  await launch()
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    kill: async () => { await signal('SIGKILL') },
    restart: async () => { await signal('SIGKILL'); await launch() },
    stop: async () => { await signal('SIGTERM'); rmSync(dir, { recursive: true, force: true }) }
  }
}
