// The worker's Prometheus metrics, served by a small HTTP listener (GET /metrics) so the same
// Prometheus that scrapes the replicas scrapes the workers.
import { createServer, type Server } from 'node:http'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export function createWorkerMetrics () {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const r = { registers: [registry] }
  return {
    registry,
    running: new Gauge({ ...r, name: 't2r_worker_jobs_running', help: 'Conversion jobs this worker is running (0 or 1)' }),
    step: new Gauge({ ...r, name: 't2r_conversion_job_step', help: 'Current step of the running conversion job', labelNames: ['job'] }),
    finished: new Counter({ ...r, name: 't2r_worker_jobs_finished_total', help: 'Conversion jobs this worker ended, by status', labelNames: ['status'] }),
    duration: new Histogram({ ...r, name: 't2r_conversion_job_duration_seconds', help: 'Conversion job wall time', labelNames: ['status'], buckets: [10, 30, 60, 300, 600, 1800, 3600, 7200] })
  }
}

export type WorkerMetrics = ReturnType<typeof createWorkerMetrics>

/** Listens on host:port (0 = any free port) and resolves with the bound port. */
export async function serveMetrics (metrics: WorkerMetrics, host: string, port: number): Promise<{ server: Server, port: number }> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: this listener serves GET /metrics only\n')
      return
    }
    metrics.registry.metrics().then((text) => {
      res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text)
    }, (err: Error) => { res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`) })
  })
  await new Promise<void>((resolve, reject) => { server.once('error', reject).listen(port, host, resolve) })
  const address = server.address()
  return { server, port: typeof address === 'object' && address !== null ? address.port : port }
}
