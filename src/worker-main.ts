// `t2r worker` (`npm run worker`): takes conversion jobs from the BullMQ queue on REDIS_URL, one
// at a time, and serves its metrics on GET /metrics. Flags and variables: conversions/queue/worker-config.ts.
import { pino } from 'pino'
import { ConversionWorker } from './conversions/queue/worker.ts'
import { loadWorkerConfig, type WorkerConfig } from './conversions/queue/worker-config.ts'
import { createWorkerMetrics, serveMetrics } from './conversions/queue/worker-metrics.ts'

export async function runWorker (argv: string[]): Promise<void> {
  let config: WorkerConfig
  try {
    config = loadWorkerConfig(argv)
  } catch (err) {
    // A configuration mistake is one line on stderr, not a stack trace.
    process.stderr.write(`t2r worker: ${(err as Error).message}\n`)
    process.exit(2)
  }
  const log = pino({ level: config.logLevel })
  const metrics = createWorkerMetrics()
  const worker = new ConversionWorker({ ...config, log, metrics })
  await worker.start()
  // The metrics port answers once the worker takes jobs: the sign a supervisor (or test) waits for.
  const listener = await serveMetrics(metrics, config.metricsHost, config.metricsPort)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'worker shutting down: the running job goes back to the queue')
      worker.close().then(() => { listener.server.close(); process.exit(0) }, (err: Error) => { log.error(err); process.exit(1) })
    })
  }
  log.info({ metrics: `http://${config.metricsHost}:${listener.port}/metrics` }, 'worker ready')
}
