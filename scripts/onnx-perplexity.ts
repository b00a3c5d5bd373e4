// Held-out perplexity of a model folder's ONNX graph in ONNX Runtime (the runtime that serves it), on
// the windows `python3 -m t2r evaluate` and scripts/llama-cpp-perplexity.ts score (trainer/t2r/data.py
// window_starts: the split's first non-overlapping windows of --seq tokens, each predicting the next
// --seq from an empty context), so the figures compare. The step graph returns the last position's
// logits only, so windows are fed one token at a time, --batch windows side by side.
// A quantized folder (`python3 -m t2r quantize`) is scored beside its source folder on the same
// windows; --write records both figures in its model.json (`quantization`), which /v1/models shows.
//   npx tsx scripts/onnx-perplexity.ts --model models/sotu-t2r-q8 [--reference models/sotu-t2r] [--data data/sotu] [--windows N] [--write]
// Prints one JSON line: {perplexity, reference_perplexity?, ratio?, max_token_logprob_diff?, tokens, windows, seconds}
// (max_token_logprob_diff: the largest change of one scored token's log-probability, quantized vs source).
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { onnxTokenLogProbs, perplexity as perplexityOf, windowsOf } from '../bench/agreement.ts'
import { readTokenFile, tokenFileName } from '../src/contract/corpus-files.ts'
import type { SplitName } from '../src/contract/schemas.ts'
import { parseManifest, type Manifest } from '../src/models/manifest.ts'

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    reference: { type: 'string' },
    data: { type: 'string', default: 'data/sotu' },
    split: { type: 'string', default: 'test' },
    seq: { type: 'string', default: '256' },
    windows: { type: 'string' },
    batch: { type: 'string', default: '16' },
    threads: { type: 'string', default: '1' },
    write: { type: 'boolean', default: false }
  }
})

function fail (message: string): never {
  process.stderr.write(`onnx-perplexity: ${message}\n`)
  process.exit(1)
}

function positive (flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  const n = Number(text)
  if (!Number.isInteger(n) || n <= 0) fail(`--${flag} must be a positive integer, got ${text}`)
  return n
}

function readManifest (dir: string): Manifest {
  return parseManifest(JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')), dir)
}

if (values.model === undefined) fail('--model FOLDER is required')
const seq = positive('seq', values.seq)!
const batch = positive('batch', values.batch)!
const threads = positive('threads', values.threads)!
const limit = positive('windows', values.windows)
const manifest = readManifest(values.model)
const source = manifest.quantization?.source
const referenceDir = values.reference ?? (source === undefined ? undefined : join(dirname(values.model), source))
if (values.write && (manifest.quantization === undefined || referenceDir === undefined)) fail('--write needs a quantized model folder (model.json `quantization`) and its source')

const ids = await readTokenFile(join(values.data, tokenFileName(values.split as SplitName)))
const windows = windowsOf(ids, seq, limit ?? Infinity)
const count = windows.length
const started = Date.now()
const scored = await onnxTokenLogProbs(values.model, windows, { threads, batch })
const perplexity = perplexityOf(scored)
const result: Record<string, unknown> = { perplexity: Number(perplexity.toFixed(4)) }
if (referenceDir !== undefined) {
  const referenceScored = await onnxTokenLogProbs(referenceDir, windows, { threads, batch })
  const reference = perplexityOf(referenceScored)
  const maxDiff = scored.reduce((m, row, w) => row.reduce((mm, x, t) => Math.max(mm, Math.abs(x - referenceScored[w][t])), m), 0)
  Object.assign(result, { reference: basename(referenceDir), reference_perplexity: Number(reference.toFixed(4)), ratio: Number((perplexity / reference).toFixed(4)), max_token_logprob_diff: Number(maxDiff.toFixed(4)) })
}
Object.assign(result, { tokens: count * seq, windows: count, split: values.split, seconds: (Date.now() - started) / 1000 })
console.log(JSON.stringify(result))

if (values.write) {
  const path = join(values.model, 'model.json')
  const json = JSON.parse(readFileSync(path, 'utf8'))
  json.quantization = { ...json.quantization, perplexity: result.perplexity, reference_perplexity: result.reference_perplexity, ratio: result.ratio, eval_tokens: result.tokens, eval_window: seq }
  writeFileSync(`${path}.tmp`, JSON.stringify(json, null, 2) + '\n')
  renameSync(`${path}.tmp`, path)
}
