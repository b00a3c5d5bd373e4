// Server configuration: defaults, then environment variables, then command-line flags.
import { isIP } from 'node:net'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { loadApiKeys, type ApiKey } from './auth/keys.ts'
import { parseOrigins } from './auth/origins.ts'

export interface Config {
  host: string
  port: number
  modelsDir: string
  dataDir: string
  /** Models to load at start (folder names under modelsDir); empty = every folder found. */
  models: string[]
  defaultModel: string | null
  executionProvider: 'cpu' | 'cuda'
  cudaDevice: number
  intraOpThreads: number | null
  /** ONNX Runtime's pool threads spin between parallel sections instead of sleeping (docs/design.md §10). */
  intraOpSpinning: boolean
  maxBatch: number
  prefillChunk: number
  streamIntervalMs: number
  maxInFlight: number
  maxInputTokens: number
  bodyLimit: number
  sessionTtlSeconds: number
  maxResidentSessions: number
  /** Redis shared by every replica: sessions (src/sessions/redis-store.ts) and conversion jobs on a
   * BullMQ queue run by `t2r worker` (src/conversions/queue/); null = one process, on disk/SQLite. */
  redisUrl: string | null
  /** How long a session's generation lease lives without renewal (a killed replica's expires after it). */
  sessionLeaseMs: number
  logLevel: string
  /** How long shutdown waits for generations in flight before cancelling them. */
  shutdownDrainMs: number
  /** The whole request (headers and body) must arrive within this; a slow body is cut off (408). */
  requestTimeoutMs: number
  /** Open connections beyond this are closed on arrival. */
  maxConnections: number
  /** A model whose recent requests waited longer than this in its queue admits no more for now (429). */
  maxQueueMs: number
  /** importsDir: where Hugging Face checkpoints a conversion may name (source type hf) live; null = none.
   * dir: every job's folder (data, checkpoints); shared by replicas and workers when jobs are queued. */
  conversions: { enabled: boolean, maxQueued: number, pythonBin: string, maxCorpusBytes: number, importsDir: string | null, dir: string }
  access: AccessConfig
}

/** Who may call, from where, and how much (docs/security.md). */
export interface AccessConfig {
  /** Hashed API keys; empty = authentication off, and the server listens on loopback only. */
  keys: ApiKey[]
  /** Origins answered with CORS headers; empty = CORS off. */
  corsOrigins: string[]
  /** Origins a WebSocket upgrade may come from (requests without an Origin are not from browsers). */
  wsOrigins: string[]
  /** Requests per minute per key (per address without a valid key); 0 = unlimited. */
  rateLimitPerMinute: number
  maxSessionsPerKey: number
  maxSessions: number
  /** Mean event-loop delay above which requests get 503; 0 = unchecked. */
  maxEventLoopDelayMs: number
}

const FLAGS = {
  host: { type: 'string', env: 'HOST' },
  port: { type: 'string', env: 'PORT' },
  'models-dir': { type: 'string', env: 'MODELS_DIR' },
  'data-dir': { type: 'string', env: 'DATA_DIR' },
  models: { type: 'string', env: 'T2R_MODELS' },
  'default-model': { type: 'string', env: 'T2R_DEFAULT_MODEL' },
  'execution-provider': { type: 'string', env: 'T2R_EXECUTION_PROVIDER' },
  'cuda-device': { type: 'string', env: 'T2R_CUDA_DEVICE' },
  'intra-op-threads': { type: 'string', env: 'T2R_INTRA_OP_THREADS' },
  'intra-op-spinning': { type: 'string', env: 'T2R_INTRA_OP_SPINNING' },
  'max-batch': { type: 'string', env: 'T2R_MAX_BATCH' },
  'prefill-chunk': { type: 'string', env: 'T2R_PREFILL_CHUNK' },
  'stream-interval-ms': { type: 'string', env: 'T2R_STREAM_INTERVAL_MS' },
  'max-in-flight': { type: 'string', env: 'T2R_MAX_IN_FLIGHT' },
  'session-ttl': { type: 'string', env: 'T2R_SESSION_TTL_SECONDS' },
  'max-resident-sessions': { type: 'string', env: 'T2R_MAX_RESIDENT_SESSIONS' },
  'redis-url': { type: 'string', env: 'REDIS_URL' },
  'session-lease-ms': { type: 'string', env: 'T2R_SESSION_LEASE_MS' },
  'log-level': { type: 'string', env: 'LOG_LEVEL' },
  'shutdown-drain': { type: 'string', env: 'T2R_SHUTDOWN_DRAIN_SECONDS' },
  'request-timeout': { type: 'string', env: 'T2R_REQUEST_TIMEOUT_SECONDS' },
  'max-connections': { type: 'string', env: 'T2R_MAX_CONNECTIONS' },
  'max-queue-time': { type: 'string', env: 'T2R_MAX_QUEUE_SECONDS' },
  python: { type: 'string', env: 'T2R_PYTHON' },
  conversions: { type: 'string', env: 'T2R_CONVERSIONS' },
  'max-queued-conversions': { type: 'string', env: 'T2R_MAX_QUEUED_CONVERSIONS' },
  'max-corpus-bytes': { type: 'string', env: 'T2R_MAX_CORPUS_BYTES' },
  'imports-dir': { type: 'string', env: 'T2R_IMPORTS_DIR' },
  'conversions-dir': { type: 'string', env: 'T2R_CONVERSIONS_DIR' },
  'api-keys-file': { type: 'string', env: 'T2R_API_KEYS_FILE' },
  'cors-origins': { type: 'string', env: 'T2R_CORS_ORIGINS' },
  'ws-origins': { type: 'string', env: 'T2R_WS_ORIGINS' },
  'rate-limit': { type: 'string', env: 'T2R_RATE_LIMIT' },
  'max-sessions-per-key': { type: 'string', env: 'T2R_MAX_SESSIONS_PER_KEY' },
  'max-sessions': { type: 'string', env: 'T2R_MAX_SESSIONS' },
  'max-event-loop-delay': { type: 'string', env: 'T2R_MAX_EVENT_LOOP_DELAY_MS' }
} as const

type FlagName = keyof typeof FLAGS

/** An on/off setting: 1 or 0 (unset: 0). */
function switchValue (name: string, value: string | undefined): boolean {
  if (value === undefined || value === '' || value === '0') return false
  if (value === '1') return true
  throw new Error(`${name} must be 0 or 1, got ${JSON.stringify(value)}`)
}

function int (name: string, value: string | undefined, fallback: number, min: number): number {
  if (value === undefined || value === '') return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`)
  return n
}

export function loadConfig (argv: string[] = [], env: NodeJS.ProcessEnv = process.env): Config {
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(Object.entries(FLAGS).map(([k, v]) => [k, { type: v.type }])) as Record<FlagName, { type: 'string' }>,
    strict: true
  })
  const get = (name: FlagName): string | undefined => values[name] ?? env[FLAGS[name].env]
  const provider = get('execution-provider') ?? 'cpu'
  if (provider !== 'cpu' && provider !== 'cuda') throw new Error(`execution provider must be cpu or cuda, got ${provider}`)
  const threads = get('intra-op-threads')
  const host = get('host') ?? '127.0.0.1'
  const access = accessConfig(get, env)
  const dataDir = get('data-dir') ?? 'data/server'
  if (access.keys.length === 0 && !isLoopback(host)) {
    throw new Error(`refusing to listen on ${host} without API keys: configure --api-keys-file or T2R_API_KEYS, or listen on 127.0.0.1`)
  }
  return {
    host,
    port: int('port', get('port'), 8080, 0),
    modelsDir: get('models-dir') ?? 'models',
    dataDir,
    models: (get('models') ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    defaultModel: get('default-model') ?? 'sotu-t2r',
    executionProvider: provider,
    cudaDevice: int('cuda device', get('cuda-device'), 0, 0),
    intraOpThreads: threads === undefined || threads === '' ? null : int('intra-op threads', threads, 1, 1),
    intraOpSpinning: switchValue('intra-op spinning', get('intra-op-spinning')),
    maxBatch: int('max batch', get('max-batch'), 32, 1),
    prefillChunk: int('prefill chunk', get('prefill-chunk'), 128, 1),
    streamIntervalMs: int('stream interval ms', get('stream-interval-ms'), 0, 0),
    maxInFlight: int('max in flight', get('max-in-flight'), 128, 1),
    maxInputTokens: 16384,
    bodyLimit: 4 * 1024 * 1024,
    sessionTtlSeconds: int('session ttl', get('session-ttl'), 3600, 1),
    maxResidentSessions: int('max resident sessions', get('max-resident-sessions'), 256, 1),
    redisUrl: redisUrl(get('redis-url')),
    sessionLeaseMs: int('session lease ms', get('session-lease-ms'), 10_000, 100),
    logLevel: get('log-level') ?? 'info',
    shutdownDrainMs: int('shutdown drain seconds', get('shutdown-drain'), 10, 0) * 1000,
    requestTimeoutMs: int('request timeout seconds', get('request-timeout'), 30, 1) * 1000,
    maxConnections: int('max connections', get('max-connections'), 1024, 1),
    maxQueueMs: int('max queue seconds', get('max-queue-time'), 10, 1) * 1000,
    conversions: { enabled: get('conversions') !== 'off', maxQueued: int('max queued conversions', get('max-queued-conversions'), 4, 1), pythonBin: get('python') ?? '/usr/bin/python3', maxCorpusBytes: int('max corpus bytes', get('max-corpus-bytes'), 2 * 1024 * 1024, 1), importsDir: get('imports-dir') ?? null, dir: get('conversions-dir') ?? join(dataDir, 'conversions') },
    access
  }
}

function accessConfig (get: (name: FlagName) => string | undefined, env: NodeJS.ProcessEnv): AccessConfig {
  const corsOrigins = parseOrigins('cors origins', get('cors-origins'))
  return {
    // Plaintext keys only ever come from the environment (a flag would show them in `ps`).
    keys: loadApiKeys(get('api-keys-file'), env.T2R_API_KEYS),
    corsOrigins,
    // The web origins trusted with CORS are trusted with WebSockets too, unless told otherwise.
    wsOrigins: get('ws-origins') === undefined ? corsOrigins : parseOrigins('websocket origins', get('ws-origins')),
    rateLimitPerMinute: int('rate limit', get('rate-limit'), 600, 0),
    maxSessionsPerKey: int('max sessions per key', get('max-sessions-per-key'), 256, 1),
    maxSessions: int('max sessions', get('max-sessions'), 10_000, 1),
    maxEventLoopDelayMs: int('max event loop delay', get('max-event-loop-delay'), 1000, 0)
  }
}

function redisUrl (value: string | undefined): string | null {
  if (value === undefined || value === '') return null
  // The value is not echoed: it may carry a password.
  if (!/^rediss?:\/\/[^\s]+$/.test(value)) throw new Error('redis url must be redis://[user:password@]host:port[/db] or rediss://… (TLS)')
  return value
}

/** Addresses only this machine can reach. */
export function isLoopback (host: string): boolean {
  if (host === 'localhost') return true
  if (isIP(host) === 4) return host.startsWith('127.')
  return host === '::1' || /^::ffff:127\./i.test(host)
}

/** ONNX Runtime threads per model: the machine's cores shared among the loaded models. */
export function threadsPerModel (config: Config, modelCount: number): number {
  return config.intraOpThreads ?? Math.max(1, Math.floor(availableParallelism() / Math.max(1, modelCount)))
}
