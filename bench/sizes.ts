// The model sets the benchmark runs on: the shipped models (5 M parameters), or random-weight models
// at realistic shapes built by trainer/experiments/bench_models.py into bench/.models/ (ignored by
// git, rebuilt when missing). Each set is a T2R model, its softmax teacher and the teacher's F32
// GGUF for llama.cpp, plus the run lengths that keep a default run within ~15 minutes on 2 cores.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
export const BENCH_MODELS = join(ROOT, 'bench', '.models')
const PYTHON = process.env.T2R_PYTHON ?? '/usr/bin/python3'

export interface RunLengths {
  rounds: number
  /** Decode tokens per single-stream measurement. */
  tokens: number
  /** Decode tokens per stream in the concurrent figures. */
  streamTokens: number
  streams: number[]
  /** Concurrent streams our softmax teacher runs (it decodes one sequence at a time). */
  softmaxStreams: number[]
  positions: number[]
  /** Rounds (the first ones) that also measure positions above 2,048. */
  longRounds: number
  prefill: number
  pplWindows: number
}

export interface ModelSet {
  modelsDir: string
  t2r: string
  softmax: string
  gguf: string
  lengths: RunLengths
  /** Makes the missing files of this set. */
  build: () => void
}

const SHIPPED_LENGTHS: RunLengths = { rounds: 5, tokens: 128, streamTokens: 64, streams: [1, 8, 32, 64], softmaxStreams: [32], positions: [64, 2048, 8192, 32768], longRounds: 1, prefill: 1000, pplWindows: 4 }
// ~125 M parameters decode ~20x slower than the shipped model here: fewer rounds and tokens, and
// no 32k fill (a 32k prefill alone takes minutes per configuration); flags restore any of them.
const SIZED_LENGTHS: RunLengths = { rounds: 3, tokens: 32, streamTokens: 16, streams: [1, 8, 32, 64], softmaxStreams: [8], positions: [64, 2048, 8192], longRounds: 1, prefill: 1000, pplWindows: 1 }

export const SIZES = ['shipped', 'gpt2-small', 'llama-125m'] as const
export type Size = typeof SIZES[number]

export function modelSet (size: Size): ModelSet {
  if (size === 'shipped') {
    const gguf = join(BENCH_MODELS, 'sotu-base.f32.gguf')
    return {
      modelsDir: join(ROOT, 'models'),
      t2r: 'sotu-t2r',
      softmax: 'sotu-base',
      gguf,
      lengths: SHIPPED_LENGTHS,
      build: () => { if (!existsSync(gguf)) writeGguf(join(ROOT, 'models', 'sotu-base'), gguf) }
    }
  }
  const dir = join(BENCH_MODELS, size)
  const set: ModelSet = {
    modelsDir: join(dir, 'models'),
    t2r: `${size}-t2r`,
    softmax: `${size}-base`,
    gguf: join(dir, `${size}-base.f32.gguf`),
    lengths: SIZED_LENGTHS,
    build: () => {
      if ([join(set.modelsDir, set.t2r), join(set.modelsDir, set.softmax), set.gguf].every((p) => existsSync(p))) return
      console.error(`building the ${size} benchmark models in ${dir} (random weights; about a minute)`)
      execFileSync(PYTHON, [join(ROOT, 'trainer', 'experiments', 'bench_models.py'), size, dir], { stdio: ['ignore', 'ignore', 'inherit'] })
    }
  }
  return set
}

/** Our writer (trainer/t2r/gguf.py): a softmax model folder as an F32 GGUF. */
export function writeGguf (modelDir: string, out: string): void {
  mkdirSync(dirname(out), { recursive: true })
  execFileSync(PYTHON, ['-m', 't2r', 'gguf', '--model', modelDir, '--out', out, '--dtype', 'f32'], { cwd: join(ROOT, 'trainer'), env: { ...process.env, PYTHONPATH: join(ROOT, 'trainer') }, stdio: ['ignore', 'ignore', 'inherit'] })
}
