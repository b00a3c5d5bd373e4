// `t2r worker` refuses a bad configuration with exit status 2 and one line on stderr naming the
// setting, before it connects anywhere.
import { spawnSync } from 'node:child_process'
import t from 'tap'
import { ROOT } from '../helpers/fixtures.ts'

function t2r (args: string[], env: Record<string, string> = {}): { status: number | null, stderr: string } {
  const { REDIS_URL: _unset, ...base } = process.env
  const r = spawnSync(process.execPath, ['bin/t2r.mjs', ...args], { cwd: ROOT, env: { ...base, ...env }, encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, stderr: r.stderr }
}

t.test('bad worker configuration: exit 2, one line naming the setting', async (t) => {
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['no Redis', ['worker'], {}, /redis-url is required/],
    ['a metrics port that is not a number', ['worker', '--metrics-port', 'abc'], { REDIS_URL: 'redis://127.0.0.1:1' }, /metrics-port must be an integer/],
    ['a lock of zero seconds', ['worker'], { REDIS_URL: 'redis://127.0.0.1:1', T2R_WORKER_LOCK_SECONDS: '0' }, /lock-seconds must be an integer >= 1/],
    ['an unknown flag', ['worker', '--bogus', 'x'], {}, /Unknown option '--bogus'/],
    ['an unknown command', ['serve-all'], {}, /unknown command "serve-all"/]
  ]
  for (const [what, args, env, message] of cases) {
    const r = t2r(args, env)
    t.equal(r.status, 2, `${what}: exit 2`)
    t.equal(r.stderr.trim().split('\n').length, 1, `${what}: one line`)
    t.match(r.stderr, message, `${what}: ${r.stderr.trim()}`)
  }
})
