// Held-out perplexity of a GGUF model in llama.cpp (npm node-llama-cpp, prebuilt CPU library), on
// the windows `python3 -m t2r evaluate` scores (trainer/t2r/data.py window_starts: non-overlapping
// windows of --seq tokens, each predicting the next --seq, each from an empty context), so the two
// figures compare. Token ids come from the corpus folder: no tokenizer is involved.
//   npx tsx scripts/llama-cpp-perplexity.ts --gguf sotu-base.gguf --data data/sotu [--split test] [--seq 256] [--windows N]
// Prints one JSON line: {perplexity, tokens, windows, seconds}.
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { llamaCppTokenLogProbs, perplexity, windowsOf } from '../bench/agreement.ts'
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
const ids = await readTokenFile(join(values.data, tokenFileName(values.split as SplitName)))
const windows = windowsOf(ids, Number(values.seq), values.windows === undefined ? Infinity : Number(values.windows))
const started = Date.now()
const logProbs = await llamaCppTokenLogProbs(values.gguf, windows, Number(values.threads))
console.log(JSON.stringify({ perplexity: perplexity(logProbs), tokens: windows.length * Number(values.seq), windows: windows.length, seconds: (Date.now() - started) / 1000 }))
