// The shipped scrape configuration (docker/prometheus/prometheus.yml), with the Compose names
// swapped for this machine's ports and 1 s intervals, run by the real Prometheus: it scrapes both
// replicas and the worker, and the dashboard's per-replica panel draws one series per replica.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ROOT, tinyModelsDir } from '../helpers/fixtures.ts'
import { startPrometheusWith, type PromSample } from '../helpers/prometheus.ts'
import { startRedis } from '../helpers/redis.ts'
import { spawnServer } from '../helpers/server.ts'
import { spawnWorker } from '../helpers/worker.ts'

const hostPort = (url: string): string => new URL(url).host

t.test('Prometheus with the shipped scrape config sees every replica and the worker', async (t) => {
  const redis = await startRedis()
  t.teardown(async () => { await redis.stop() })
  const scratch = mkdtempSync(join(tmpdir(), 't2r-scale-prom-'))
  t.teardown(() => { rmSync(scratch, { recursive: true, force: true }) })
  mkdirSync(join(scratch, 'conversions'))
  const shared = { REDIS_URL: redis.url, MODELS_DIR: tinyModelsDir(), T2R_CONVERSIONS_DIR: join(scratch, 'conversions'), T2R_DEFAULT_MODEL: 'tiny-t2r' }
  const [a, b] = await Promise.all(['a', 'b'].map(async (name) => await spawnServer({ ...shared, DATA_DIR: join(scratch, name) })))
  t.teardown(async () => { await Promise.all([a.kill('SIGTERM'), b.kill('SIGTERM')]) })
  const worker = await spawnWorker(shared)
  t.teardown(async () => { await worker.kill('SIGTERM') })

  const config = readFileSync(join(ROOT, 'docker', 'prometheus', 'prometheus.yml'), 'utf8')
    .replaceAll('replica-1:8080', hostPort(a.url))
    .replaceAll('replica-2:8080', hostPort(b.url))
    .replaceAll('worker:9464', hostPort(worker.metricsUrl))
    .replace(/scrape_interval: \d+s/g, 'scrape_interval: 1s')
    .replace(/scrape_timeout: \d+s/g, 'scrape_timeout: 1s')
  const instances = (r: PromSample[]): string[] => r.filter((s) => s.value[1] === '1').map((s) => s.metric.instance).sort()
  const replicas = [hostPort(a.url), hostPort(b.url)].sort()
  const prom = await startPrometheusWith(config, 'up{job="t2r-serve"} == 1', (r) => r.length === 2, 'both replicas up')
  t.teardown(prom.stop)

  t.same(instances(await prom.query('up{job="t2r-serve"} == 1')), replicas, 'job t2r-serve scrapes both replicas')
  const workerUp = await prom.until('up{job="t2r-worker"}', (r) => r.some((s) => s.value[1] === '1'), 'the worker up')
  t.same(instances(workerUp), [hostPort(worker.metricsUrl)], 'job t2r-worker scrapes the worker')
  const running = await prom.until('t2r_worker_jobs_running', (r) => r.length === 1, 'the worker\'s job gauge')
  t.equal(running[0].value[1], '0', 'the worker\'s job gauge is scraped: no job running')

  // Traffic on each replica, then the dashboard's per-replica panel, as Grafana would ask it.
  for (const url of [a.url, b.url]) for (let i = 0; i < 3; i++) await fetch(`${url}/v1/models`)
  const dashboard = JSON.parse(readFileSync(join(ROOT, 'docker', 'grafana', 'dashboards', 't2r-serve.json'), 'utf8')) as { panels: Array<{ title?: string, targets?: Array<{ expr: string }> }> }
  const expr = dashboard.panels.find((p) => p.title === 'Requests/s by replica')?.targets?.[0].expr ?? ''
  t.match(expr, /by \(instance\)/, 'the panel splits by instance')
  const perReplica = await prom.until(expr.replaceAll('$__rate_interval', '1m'), (r) => r.length === 2 && r.every((s) => Number(s.value[1]) > 0), 'a request rate on each replica')
  t.same(perReplica.map((s) => s.metric.instance).sort(), replicas, 'one series per replica')
})
