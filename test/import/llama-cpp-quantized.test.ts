// GGUF Q8_0 and Q4_0 files (trainer/t2r/gguf.py, GGML's block layout) read by llama.cpp itself (npm
// node-llama-cpp 3.21.1): the shipped teacher's next-token log-probabilities from each stay within
// the quantization's own error of its F32 file's. A wrong byte layout scrambles the weights and
// moves them by whole nats. Perplexity costs are in docs/design.md §7.6.
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { loadTokenizer } from '../../src/tokenizer/tokenizer.ts'
import { SHIPPED, t2r } from '../helpers/fixtures.ts'
import { llamaCppRun, type LogProbRows } from './llama-cpp.ts'

const PLAUSIBLE = -10

/** Largest |Δ log p| over the tokens `reference` puts above e^PLAUSIBLE; how many that was at least per row. */
function comparePlausible (reference: LogProbRows, other: LogProbRows): { maxDiff: number, minCompared: number } {
  let maxDiff = 0
  let minCompared = Infinity
  reference.forEach((row, t) => {
    let compared = 0
    row.forEach((lp, i) => {
      if (lp > PLAUSIBLE) { maxDiff = Math.max(maxDiff, Math.abs(lp - other[t][i])); compared++ }
    })
    minCompared = Math.min(minCompared, compared)
  })
  return { maxDiff, minCompared }
}

// Largest |Δ log p| at every prompt position over the tokens F32 gives log p > -10 (those sampling
// can reach; far-off tokens move more and matter less), quantized vs F32, measured here: 0.087
// (Q8_0), 1.23 (Q4_0). Tolerances: those with a margin of ~2.5-3×. Q4_0 with its nibbles in the
// wrong order measured 13.5.
const TOLERANCE = { q8_0: 0.25, q4_0: 3 } as const

const dir = mkdtempSync(join(tmpdir(), 't2r-gguf-q-'))
t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
const tokenizer = loadTokenizer(join(SHIPPED, 'sotu-base', 'tokenizer.json'))
const PROMPT = await tokenizer.encode('Fellow-Citizens of the Senate and House of Representatives: the state of the Union')
const gguf = (dtype: string): string => {
  const out = join(dir, `sotu-base-${dtype}.gguf`)
  t2r(['gguf', '--model', join(SHIPPED, 'sotu-base'), '--out', out, '--dtype', dtype])
  return out
}
const f32File = gguf('f32')
const f32 = await llamaCppRun(f32File, PROMPT, 1)

for (const dtype of ['q8_0', 'q4_0'] as const) {
  t.test(`sotu-base ${dtype}: llama.cpp's log-probabilities within ${TOLERANCE[dtype]} of F32`, async (t) => {
    const file = gguf(dtype)
    t.ok(statSync(file).size < statSync(f32File).size / (dtype === 'q8_0' ? 3 : 4.5), 'the file is the blocks\' size, not F32\'s')
    const quantized = await llamaCppRun(file, PROMPT, 1)
    const { maxDiff, minCompared } = comparePlausible(f32.rows, quantized.rows)
    t.ok(minCompared >= 10, `compared ${minCompared}+ tokens at each of ${PROMPT.length} positions`)
    t.ok(maxDiff <= TOLERANCE[dtype], `max |Δ log p| ${maxDiff.toExponential(2)} ≤ ${TOLERANCE[dtype]}`)
  })
}
