// Held-out perplexity of a GGUF model in llama.cpp (npm node-llama-cpp, prebuilt CPU library), on
// the windows `python3 -m t2r evaluate` scores (trainer/t2r/data.py window_starts: non-overlapping
// windows of --seq tokens, each predicting the next --seq, each from an empty context), so the two
// figures compare. Token ids come from the corpus folder: no tokenizer is involved.
//   npx tsx scripts/llama-cpp-perplexity.ts --gguf sotu-base.gguf --data data/sotu [--split test] [--seq 256] [--windows N]
// Prints one JSON line: {perplexity, tokens, windows, seconds}.
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { getLlama, LlamaLogLevel, type ControlledEvaluateInputItem, type Token } from 'node-llama-cpp'
import { readTokenFile, tokenFileName } from '../src/contract/corpus-files.ts'
import type { SplitName } from '../src/contract/schemas.ts'

const { values } = parseArgs({
  options: {
    gguf: { type: 'string' },
    data: { type: 'string', default: 'data/sotu' },
    split: { type: 'string', default: 'test' },
    seq: { type: 'string', default: '256' },
    windows: { type: 'string' },
    threads: { type: 'string', default: '1' }
  }
})
if (values.gguf === undefined) throw new Error('--gguf FILE is required')
const seq = Number(values.seq)
const ids = await readTokenFile(join(values.data, tokenFileName(values.split as SplitName)))
const count = Math.min(Math.floor((ids.length - 1) / seq), values.windows === undefined ? Infinity : Number(values.windows))

const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error })
const model = await llama.loadModel({ modelPath: values.gguf })
// An F32 KV cache and no flash attention: llama.cpp's float32 arithmetic, nothing rounded to half.
const context = await model.createContext({ contextSize: seq, batchSize: seq, flashAttention: false, threads: Number(values.threads), experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' })
const sequence = context.getSequence()
const started = Date.now()
let nll = 0
for (let w = 0; w < count; w++) {
  const window = Array.from(ids.subarray(w * seq, w * seq + seq + 1))
  await sequence.clearHistory()
  const input = window.slice(0, seq).map((id): ControlledEvaluateInputItem => [id as unknown as Token, { generateNext: { probabilities: true } }])
  const results = await sequence.controlledEvaluate(input)
  for (let t = 0; t < seq; t++) {
    const p = results[t]?.next.probabilities?.get(window[t + 1] as unknown as Token)
    if (p === undefined || p <= 0) throw new Error(`window ${w}, position ${t}: no probability for token ${window[t + 1]}`)
    nll -= Math.log(p)
  }
}
const tokens = count * seq
console.log(JSON.stringify({ perplexity: Math.exp(nll / tokens), tokens, windows: count, seconds: (Date.now() - started) / 1000 }))
await context.dispose()
await model.dispose()
