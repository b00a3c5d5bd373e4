// `t2r worker` configuration: defaults, then environment variables, then flags. The settings it
// shares with the server have the server's names (REDIS_URL, MODELS_DIR, T2R_CONVERSIONS_DIR, ...).
import { join } from 'node:path'
import { parseArgs } from 'node:util'

export interface WorkerConfig {
  redisUrl: string
  modelsDir: string
  conversionsDir: string
  pythonBin: string
  threads: number
  metricsHost: string
  /** 0 = any free port (the bound port is logged). */
  metricsPort: number
  lockMs: number
  maxStalls: number
  logLevel: string
}

const FLAGS = {
  'redis-url': 'REDIS_URL',
  'models-dir': 'MODELS_DIR',
  'data-dir': 'DATA_DIR',
  'conversions-dir': 'T2R_CONVERSIONS_DIR',
  python: 'T2R_PYTHON',
  'intra-op-threads': 'T2R_INTRA_OP_THREADS',
  'metrics-host': 'T2R_WORKER_METRICS_HOST',
  'metrics-port': 'T2R_WORKER_METRICS_PORT',
  'lock-seconds': 'T2R_WORKER_LOCK_SECONDS',
  'max-stalls': 'T2R_WORKER_MAX_STALLS',
  'log-level': 'LOG_LEVEL'
} as const

function int (name: string, value: string | undefined, fallback: number, min: number): number {
  if (value === undefined || value === '') return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`)
  return n
}

export function loadWorkerConfig (argv: string[], env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const { values } = parseArgs({ args: argv, options: Object.fromEntries(Object.keys(FLAGS).map((k) => [k, { type: 'string' }])), strict: true })
  const get = (name: keyof typeof FLAGS): string | undefined => (values[name] as string | undefined) ?? env[FLAGS[name]]
  const redisUrl = get('redis-url')
  if (redisUrl === undefined || redisUrl === '') throw new Error('redis-url is required: the queue the worker takes jobs from (--redis-url or REDIS_URL)')
  const dataDir = get('data-dir') ?? 'data/server'
  return {
    redisUrl,
    modelsDir: get('models-dir') ?? 'models',
    conversionsDir: get('conversions-dir') ?? join(dataDir, 'conversions'),
    pythonBin: get('python') ?? '/usr/bin/python3',
    threads: int('intra-op-threads', get('intra-op-threads'), 2, 1),
    metricsHost: get('metrics-host') ?? '127.0.0.1',
    metricsPort: int('metrics-port', get('metrics-port'), 9464, 0),
    lockMs: int('lock-seconds', get('lock-seconds'), 30, 1) * 1000,
    maxStalls: int('max-stalls', get('max-stalls'), 5, 0),
    logLevel: get('log-level') ?? 'info'
  }
}
