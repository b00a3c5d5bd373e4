// A real Prometheus (Debian's package, installed by scripts/setup.sh) scraping a test server every
// second, in its own scratch folder, for tests that query what it scraped.
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './server.ts'

export const PROMETHEUS_BIN = '/usr/bin/prometheus'

export interface PromSample { metric: Record<string, string>, value: [number, string] }

export interface RunningPrometheus {
  url: string
  /** An instant query; throws with Prometheus' own error text when it refuses the expression. */
  query: (expr: string) => Promise<PromSample[]>
  /** Polls an instant query until `done` holds for its result (Prometheus' signal, not a sleep). */
  until: (expr: string, done: (result: PromSample[]) => boolean, what: string) => Promise<PromSample[]>
  stop: () => Promise<void>
}

const DEADLINE_MS = 90_000
const POLL_MS = 250

/** Starts Prometheus scraping `target` (host:port) as job `job`; resolves once it is ready. */
export async function startPrometheus (target: string, job: string): Promise<RunningPrometheus> {
  const config = [
    'global:',
    '  scrape_interval: 1s',
    '  evaluation_interval: 1s',
    'scrape_configs:',
    `  - job_name: ${JSON.stringify(job)}`,
    '    scrape_interval: 1s',
    '    scrape_timeout: 1s',
    '    static_configs:',
    `      - targets: [${JSON.stringify(target)}]`,
    ''
  ].join('\n')
  return await startPrometheusWith(config, `up{job=${JSON.stringify(job)}}`, (r) => r.length === 1 && r[0].value[1] === '1', `successful scrape of ${target}`)
}

/** Starts Prometheus on the given configuration; resolves once `readyExpr` satisfies `ready`. */
export async function startPrometheusWith (configText: string, readyExpr: string, ready: (result: PromSample[]) => boolean, what: string): Promise<RunningPrometheus> {
  if (!existsSync(PROMETHEUS_BIN)) throw new Error(`${PROMETHEUS_BIN} is missing: run scripts/setup.sh (it installs Debian's prometheus package)`)
  const dir = mkdtempSync(join(tmpdir(), 't2r-prometheus-'))
  const config = join(dir, 'prometheus.yml')
  writeFileSync(config, configText)
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const child = spawn(PROMETHEUS_BIN, [
    `--config.file=${config}`,
    `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`
  ], { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { log = (log + chunk).slice(-4000) })
  let exited: number | null | undefined
  const exit = new Promise<void>((resolve) => { child.once('exit', (code) => { exited = code; resolve() }) })

  const query = async (expr: string): Promise<PromSample[]> => {
    const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`)
    const body = await res.json() as { status: string, error?: string, data?: { resultType: string, result: PromSample[] } }
    if (body.status !== 'success' || body.data === undefined) throw new Error(`prometheus refused ${expr}: ${body.error ?? res.status}`)
    // Scalars come back as one [time, value] pair; a vector is the common case for dashboards.
    return body.data.resultType === 'scalar' ? [{ metric: {}, value: body.data.result as unknown as [number, string] }] : body.data.result
  }

  const until = async (expr: string, done: (result: PromSample[]) => boolean, what: string): Promise<PromSample[]> => {
    const deadline = Date.now() + DEADLINE_MS
    let last: unknown
    for (;;) {
      if (exited !== undefined) throw new Error(`prometheus exited (${String(exited)}) while waiting for ${what}:\n${log}`)
      try {
        const result = await query(expr)
        if (done(result)) return result
        last = result
      } catch (err) {
        last = err // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`prometheus: no ${what} after ${DEADLINE_MS / 1000} s; last answer ${last instanceof Error ? last.message : JSON.stringify(last)}\n${log}`)
      await new Promise((resolve) => setTimeout(resolve, POLL_MS))
    }
  }

  const stop = async (): Promise<void> => {
    if (exited === undefined) child.kill('SIGTERM')
    await exit
    rmSync(dir, { recursive: true, force: true })
  }

  try {
    await until(readyExpr, ready, what)
  } catch (err) {
    await stop()
    throw err
  }
  return { url, query, until, stop }
}
