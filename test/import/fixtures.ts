// Tiny Hugging Face checkpoints (trainer/tests/hf_checkpoints.py: exact HF layout, random weights,
// the shipped tokenizer), their imports (the real `t2r import` CLI) and GGUF files for llama.cpp
// (the real `t2r gguf` CLI, from the HF folder: llama.cpp's conversion, not our model's), built once
// per checkout under test/.fixtures.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT, SHIPPED } from '../helpers/fixtures.ts'

const FIXTURES = join(ROOT, 'test', '.fixtures', 'hf')
const PYTHON = process.env.T2R_PYTHON ?? '/usr/bin/python3'
const TRAINER = join(ROOT, 'trainer')

export const VARIANTS = ['llama-gqa', 'llama-untied-llama3-bf16', 'llama-mqa-linear-f16-sharded', 'llama-sentencepiece', 'mistral-untied', 'qwen2-bias', 'gpt2', 'gpt2-f16-sharded'] as const
export type Variant = typeof VARIANTS[number] | 'sotu-base'

/** `PYTHONPATH=trainer python3 -m t2r ...`; -> its stderr and exit code (never throws). */
export function t2r (args: string[]): { status: number, stderr: string } {
  try {
    execFileSync(PYTHON, ['-m', 't2r', ...args], { cwd: TRAINER, env: { ...process.env, PYTHONPATH: TRAINER, OMP_NUM_THREADS: '1' }, stdio: ['ignore', 'ignore', 'pipe'] })
    return { status: 0, stderr: '' }
  } catch (err) {
    const e = err as { status: number | null, stderr: Buffer }
    return { status: e.status ?? -1, stderr: e.stderr.toString() }
  }
}

function must (args: string[]): void {
  const r = t2r(args)
  if (r.status !== 0) throw new Error(`t2r ${args.join(' ')} failed: ${r.stderr}`)
}

export interface HfFixtures {
  /** variant -> Hugging Face checkpoint folder */
  hf: (v: Variant) => string
  /** folder of imported model folders (one per variant), for a server's --models-dir */
  models: string
  gguf: (v: Variant) => string
}

/** Every variant, plus the shipped teacher exported to the HF layout (a model trained on SOTU). */
export function hfFixtures (): HfFixtures {
  const done = {
    hf: (v: Variant) => join(FIXTURES, 'checkpoints', v),
    models: join(FIXTURES, 'models'),
    gguf: (v: Variant) => join(FIXTURES, 'gguf', `${v}.gguf`)
  }
  if ([...VARIANTS, 'sotu-base' as const].every((v) => existsSync(done.gguf(v)))) return done
  const work = join(ROOT, 'test', '.fixtures', `hf-build-${process.pid}`)
  rmSync(work, { recursive: true, force: true })
  mkdirSync(join(work, 'gguf'), { recursive: true })
  execFileSync(PYTHON, [join(TRAINER, 'tests', 'hf_checkpoints.py'), join(work, 'checkpoints')], { stdio: 'ignore' })
  must(['export-hf', '--model', join(SHIPPED, 'sotu-base'), '--out', join(work, 'checkpoints', 'sotu-base')])
  for (const v of [...VARIANTS, 'sotu-base'] as const) {
    must(['import', '--hf', join(work, 'checkpoints', v), '--out', join(work, 'models', v), '--threads', '1'])
    must(['gguf', '--hf', join(work, 'checkpoints', v), '--out', join(work, 'gguf', `${v}.gguf`)])
  }
  rmSync(FIXTURES, { recursive: true, force: true })
  renameSync(work, FIXTURES)
  return done
}
