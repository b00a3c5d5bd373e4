// A real Prometheus scrapes a real server: latency quantiles come out of PromQL, and every query of
// the shipped Grafana dashboard names series the server exports and, where those series have
// samples, returns data. Prometheus is Debian's package (scripts/setup.sh installs it).
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ROOT, tinyModelsDir } from '../helpers/fixtures.ts'
import { startPrometheus } from '../helpers/prometheus.ts'
import { metricValue, postJson, startServer } from '../helpers/server.ts'

const DASHBOARD = join(ROOT, 'docker', 'grafana', 'dashboards', 't2r-serve.json')
// The dashboard's process panels select the shipped scrape config's job, so the test scrapes as it.
const JOB = /job_name:\s*([\w-]+)/.exec(readFileSync(join(ROOT, 'docker', 'prometheus', 'prometheus.yml'), 'utf8'))![1]

const srv = await startServer({ modelsDir: tinyModelsDir() })
t.teardown(srv.close)

async function traffic (n: number): Promise<void> {
  await Promise.all(Array.from({ length: n }, async (_, i) => {
    const res = await postJson(`${srv.url}/generate`, { inputs: `The Congress ${i}`, parameters: { max_new_tokens: 8 } })
    if (res.status !== 200) throw new Error(`/generate: ${res.status} ${await res.text()}`)
  }))
}

// Labelled series appear on their first observation; making them exist before the first scrape
// lets a rate() over the traffic below see an increase.
await traffic(2)
await postJson(`${srv.url}/v1/sessions`, { prompt: 'The' })
const prom = await startPrometheus(srv.url.replace('http://', ''), JOB).catch((err: Error) => {
  t.fail(err.message)
  return null
})
if (prom !== null) t.teardown(prom.stop)

t.test('PromQL histogram_quantile over time to first token gives a number', { skip: prom === null ? 'prometheus did not start (see the failure above)' : false }, async (t) => {
  await traffic(4)
  for (const q of [0.5, 0.95]) {
    const expr = `histogram_quantile(${q}, sum by (le) (rate(t2r_time_to_first_token_seconds_bucket[1m])))`
    const result = await prom!.until(expr, (r) => r.length === 1 && Number.isFinite(Number(r[0].value[1])), `finite ${expr}`)
    const seconds = Number(result[0].value[1])
    t.ok(seconds > 0 && seconds < 30, `p${q * 100} time to first token ${seconds} s`)
  }
  const generated = await metricValue(srv.url, 't2r_generated_tokens_total')
  t.ok(generated >= 6, `${generated} tokens generated`)
  await prom!.until('sum(t2r_generated_tokens_total)', (r) => r.length === 1 && Number(r[0].value[1]) === generated, `${generated} generated tokens scraped`)
})

interface Panel { title?: string, targets?: Array<{ expr?: string }>, panels?: Panel[] }
interface Variable { name: string, type: string, query?: string | { query: string }, allValue?: string }

function panels (list: Panel[]): Panel[] {
  return list.flatMap((p) => [p, ...panels(p.panels ?? [])])
}

const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'Inf', 'NaN'])

/** Metric names in a PromQL expression: identifiers that are not functions, keywords or labels. */
function metricNames (expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // strings
    .replace(/\{[^}]*\}/g, '') // label matchers
    .replace(/\[[^\]]*\]/g, '') // ranges
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '') // label lists
  return [...bare.matchAll(/(?<![\w.:$])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()/g)].map((m) => m[1]).filter((w) => !PROMQL_WORDS.has(w))
}

t.test('metric names are read out of PromQL the way Prometheus reads them', async (t) => {
  t.same(metricNames('histogram_quantile(0.5, sum by (le, model) (rate(a_b_bucket{model=~"$model"}[$__rate_interval])))'), ['a_b_bucket'])
  t.same(metricNames('sum(rate(x_total{status=~"5.."}[1m])) / clamp_min(sum(rate(x_total[1m])), 1e-9) or vector(0)'), ['x_total', 'x_total'])
  t.same(metricNames('max by (job) (g) and on (job) h'), ['g', 'h'])
})

t.test('every dashboard query names exported series and returns data where they have samples', { skip: prom === null ? 'prometheus did not start (see the failure above)' : false }, async (t) => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[], templating: { list: Variable[] } }
  const exposition = await (await fetch(`${srv.url}/metrics`)).text()
  const types = new Map([...exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]))
  const family = (name: string): string | undefined => {
    if (types.has(name)) return name
    const m = /^(.*)_(bucket|sum|count)$/.exec(name)
    if (m === null) return undefined
    const kind = types.get(m[1])
    return kind === 'histogram' || (kind === 'summary' && m[2] !== 'bucket') ? m[1] : undefined
  }
  const hasSamples = (name: string): boolean => new RegExp(`^${name}[{ ]`, 'm').test(exposition)

  // Grafana variables: `label_values(selector, label)` asks Prometheus for a label's values; "All"
  // sends the variable's allValue; $__rate_interval is at least four scrape intervals.
  const substitutions: Array<[RegExp, string]> = [[/\$__rate_interval/g, '1m']]
  for (const v of dashboard.templating.list) {
    if (v.type !== 'query') continue
    const q = typeof v.query === 'string' ? v.query : v.query?.query ?? ''
    const m = /^label_values\((.*),\s*(\w+)\)$/.exec(q)
    if (m === null) { t.fail(`variable ${v.name}: query ${q} is not label_values(selector, label)`); continue }
    t.ok(metricNames(m[1]).every((n) => family(n) !== undefined), `variable ${v.name} selects exported series`)
    const res = await (await fetch(`${prom!.url}/api/v1/label/${m[2]}/values?match[]=${encodeURIComponent(m[1])}`)).json() as { data: string[] }
    t.ok(res.data.includes('tiny-t2r'), `variable ${v.name} offers ${JSON.stringify(res.data)}`)
    substitutions.push([new RegExp(`\\$\\{?${v.name}\\}?`, 'g'), v.allValue ?? '.*'])
  }

  // At least four scrapes in the window, so every rate() has samples to work with.
  await prom!.until(`count_over_time(up{job="${JOB}"}[1m])`, (r) => r.length === 1 && Number(r[0].value[1]) >= 4, 'four scrapes')
  let queries = 0
  for (const panel of panels(dashboard.panels)) {
    for (const target of panel.targets ?? []) {
      if (target.expr === undefined) continue
      queries++
      const what = `panel "${panel.title ?? ''}": ${target.expr}`
      const names = metricNames(target.expr)
      if (names.length === 0) t.fail(`${what} names no metric`)
      t.same(names.filter((n) => family(n) === undefined), [], `${what} names only series the server exports`)
      const expr = substitutions.reduce((e, [from, to]) => e.replace(from, to), target.expr)
      if (expr.includes('$')) t.fail(`${what}: unknown variable in ${expr}`)
      // No data is right only for series with no samples yet (conversion jobs that never ran).
      const result = await prom!.query(expr)
      if (names.every(hasSamples)) t.ok(result.length > 0, `${what} has data`)
    }
  }
  t.ok(queries >= 20, `${queries} dashboard queries checked`)
})
