// Real models for the tests: tiny ones trained by the real trainer (seconds), built once per
// checkout under test/.fixtures, plus the shipped models in models/.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const SHIPPED = join(ROOT, 'models')
export const FIXTURES = join(ROOT, 'test', '.fixtures')
export const PYTHON = process.env.T2R_PYTHON ?? '/usr/bin/python3'

export function t2r (args: string[]): void {
  execFileSync(PYTHON, ['-m', 't2r', ...args], { cwd: join(ROOT, 'trainer'), env: { ...process.env, PYTHONPATH: join(ROOT, 'trainer') }, stdio: ['ignore', 'ignore', 'inherit'] })
}

/** Token-id files of the SOTU corpus, written by the TypeScript side with the shipped tokenizer. */
export function corpusDir (): string {
  const dir = join(ROOT, 'data', 'sotu')
  if (!existsSync(join(dir, 'meta.json'))) {
    execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'prepare-corpus.ts'), '--out', dir, '--tokenizer', join(SHIPPED, 'sotu-base', 'tokenizer.json')], { cwd: ROOT, stdio: 'inherit' })
  }
  return dir
}

/** A folder with tiny-base (softmax, with checkpoint) and tiny-t2r (its conversion). */
export function tinyModelsDir (): string {
  const dir = join(FIXTURES, 'models')
  if (existsSync(join(dir, 'tiny-t2r', 'model.json'))) return dir
  const data = corpusDir()
  const work = join(FIXTURES, `build-${process.pid}`)
  rmSync(work, { recursive: true, force: true })
  mkdirSync(work, { recursive: true })
  const common = ['--data', data, '--batch', '4', '--seq', '32', '--eval-windows', '4', '--threads', '1', '--log-every', '100']
  t2r(['pretrain', ...common, '--run', join(work, 'run-base'), '--steps', '20', '--dim', '32', '--layers', '2', '--heads', '2', '--ffn-dim', '64', '--lr', '1e-2', '--warmup', '2', '--out', join(work, 'models', 'tiny-base')])
  t2r(['convert', ...common, '--teacher', join(work, 'models', 'tiny-base'), '--run', join(work, 'run-t2r'), '--steps', '10', '--transfer-steps', '0', '--feature-dim', '8', '--lr', '2e-3', '--warmup', '2', '--out', join(work, 'models', 'tiny-t2r')])
  rmSync(dir, { recursive: true, force: true })
  renameSync(join(work, 'models'), dir)
  rmSync(work, { recursive: true, force: true })
  return dir
}
