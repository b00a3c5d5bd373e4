// The benchmark's gate (bench/agreement.ts): llama.cpp is timed only on a GGUF that computes what
// our model computes. A GGUF of the same model passes; one of another model (same vocabulary) is
// refused by `npm run bench` with one line on stderr, before anything is timed or written.
import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { checkAgreement, windowsOf } from '../../bench/agreement.ts'
import { writeGguf } from '../../bench/sizes.ts'
import { readTokenFile, tokenFileName } from '../../src/contract/corpus-files.ts'
import { corpusDir, FIXTURES, ROOT, SHIPPED, tinyModelsDir } from '../helpers/fixtures.ts'

const models = tinyModelsDir()
const dir = join(FIXTURES, 'bench')
mkdirSync(dir, { recursive: true })
const gguf = (model: string, folder: string): string => {
  const out = join(dir, `${model}.f32.gguf`)
  if (!existsSync(out)) writeGguf(folder, out)
  return out
}
const tinyGguf = gguf('tiny-base', join(models, 'tiny-base'))
const otherGguf = gguf('sotu-base', join(SHIPPED, 'sotu-base'))

t.test('a GGUF of the same teacher agrees with our ONNX graph', async (t) => {
  const windows = windowsOf(await readTokenFile(join(corpusDir(), tokenFileName('test'))), 32, 2)
  const a = await checkAgreement(join(models, 'tiny-base'), tinyGguf, windows, { perplexity: 1e-4, logProb: 1e-2 })
  t.equal(a.tokens, 64)
  t.ok(a.relativeDifference < 1e-4, `relative perplexity difference ${a.relativeDifference.toExponential(2)}`)
})

t.test('npm run bench refuses a GGUF of another model, naming both perplexities', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'bench-refuse-'))
  t.teardown(() => { rmSync(tmp, { recursive: true, force: true }) })
  const out = join(tmp, 'results.json')
  const args = ['--import', 'tsx', 'bench/compare.ts', '--models-dir', models, '--t2r', 'tiny-t2r', '--softmax', 'tiny-base', '--gguf', otherGguf, '--ppl-windows', '1', '--out', out]
  const err = await promisify(execFile)(process.execPath, args, { cwd: ROOT }).then(() => null, (e: { code: number, stderr: string }) => e)
  t.not(err, null, 'the run fails')
  t.equal(err?.code, 1)
  const last = err?.stderr.trim().split('\n').at(-1) ?? ''
  t.match(last, /^bench: error: .*sotu-base\.f32\.gguf does not compute .*tiny-base: perplexity [\d.]+ vs ours [\d.]+/)
  t.notOk(existsSync(out), 'no results written')
})
