// scripts/setup-gpu.sh --check names each CUDA library the provider needs that the dynamic loader
// cannot find, and exits non-zero exactly when something is missing. The libraries are offered
// through LD_LIBRARY_PATH (files named like them in a temporary folder): the script's search path
// besides the ldconfig cache, so the test controls what is found on any host.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'

const REQUIRED = ['libcudart.so.13', 'libcublas.so.13', 'libcublasLt.so.13', 'libcurand.so.10', 'libcudnn.so.9']

function check (libs: string[]): { code: number | null, lines: string[], missing: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 't2r-cuda-libs-'))
  try {
    for (const lib of libs) writeFileSync(join(dir, lib), '')
    const r = spawnSync('bash', ['scripts/setup-gpu.sh', '--check', '--no-driver'], { encoding: 'utf8', env: { ...process.env, LD_LIBRARY_PATH: dir } })
    const lines = r.stdout.split('\n')
    const missing = /setup-gpu: missing: (.*)/.exec(r.stderr)?.[1].split(' ') ?? []
    return { code: r.status, lines, missing }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The ldconfig cache of this host, which the script also searches. */
const cache = spawnSync('bash', ['-c', '$(command -v ldconfig || echo /sbin/ldconfig) -p'], { encoding: 'utf8' }).stdout

t.test('every required CUDA library found: each is reported ok with where it is', async (t) => {
  const r = check(REQUIRED)
  for (const lib of REQUIRED) t.ok(r.lines.some((l) => l.includes(`ok       ${lib}  `)), `${lib} reported found`)
  for (const lib of REQUIRED) t.notOk(r.missing.includes(lib), `${lib} not in the missing list`)
  t.equal(r.code === 0, r.missing.length === 0, 'exit 0 exactly when nothing is missing')
})

const hostHasCudnn = cache.includes('libcudnn.so.9 ')
t.test('a library the host lacks is named, with what provides it, and the exit is non-zero', { skip: hostHasCudnn ? 'this host has cuDNN 9 in its ldconfig cache' : false }, async (t) => {
  const r = check(REQUIRED.filter((l) => l !== 'libcudnn.so.9'))
  t.ok(r.lines.some((l) => /MISSING {2}libcudnn\.so\.9 {2}<- cuDNN 9 for CUDA 13/.test(l)), r.lines.join('\n'))
  t.ok(r.missing.includes('libcudnn.so.9'))
  t.notOk(r.missing.some((m) => REQUIRED.includes(m) && m !== 'libcudnn.so.9'), 'only the absent library is named')
  t.not(r.code, 0)
})

t.test('an unknown argument is refused', async (t) => {
  const r = spawnSync('bash', ['scripts/setup-gpu.sh', '--bogus'], { encoding: 'utf8' })
  t.equal(r.status, 2)
  t.match(r.stderr, /unknown argument --bogus/)
})
