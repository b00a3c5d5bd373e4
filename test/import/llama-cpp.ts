// Next-token log-probabilities of a model two ways, for the llama.cpp agreement tests: our ONNX
// graph in onnxruntime-node (fed one token at a time with its state, as the engine decodes), and
// llama.cpp (node-llama-cpp) on a GGUF file written by trainer/t2r/gguf.py. Both take token ids,
// so the tokenizers are not what is compared.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import ort from 'onnxruntime-node'
import { getLlama, LlamaLogLevel, type ControlledEvaluateInputItem, type Llama, type Token } from 'node-llama-cpp'
import { ONNX_NAMES } from '../../src/contract/onnx-io.ts'
import { parseManifest, stateElements, stateShape } from '../../src/models/manifest.ts'

/** log-softmax of each position's next-token distribution: rows[t][id]. */
export type LogProbRows = Float64Array[]

function logSoftmax (logits: ArrayLike<number>): Float64Array {
  let max = -Infinity
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i])
  let sum = 0
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max)
  const lse = max + Math.log(sum)
  const out = new Float64Array(logits.length)
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] - lse
  return out
}

/** Largest |Δ log p| over the tokens both put above e^-80 (float32 probabilities underflow below
 * that), and how many tokens per row that was at least. */
export function compareRows (a: LogProbRows, b: LogProbRows): { maxDiff: number, minCompared: number } {
  if (a.length !== b.length) throw new Error(`${a.length} rows vs ${b.length}`)
  let maxDiff = 0
  let minCompared = Infinity
  for (let t = 0; t < a.length; t++) {
    if (a[t].length !== b[t].length) throw new Error(`row ${t}: ${a[t].length} tokens vs ${b[t].length}`)
    let compared = 0
    for (let i = 0; i < a[t].length; i++) {
      if (a[t][i] > -80 && b[t][i] > -80) {
        maxDiff = Math.max(maxDiff, Math.abs(a[t][i] - b[t][i]))
        compared++
      }
    }
    minCompared = Math.min(minCompared, compared)
  }
  return { maxDiff, minCompared }
}

export function argmax (row: ArrayLike<number>): number {
  let best = 0
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i
  return best
}

/** Our ONNX graph: log-probabilities after each of `ids`, then `extra` greedy tokens. */
export async function onnxRun (dir: string, ids: number[], extra: number): Promise<{ rows: LogProbRows, greedy: number[] }> {
  const manifest = parseManifest(JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')), dir)
  const session = await ort.InferenceSession.create(join(dir, 'model.onnx'), { intraOpNumThreads: 1 })
  try {
    let state: ort.Tensor[] = manifest.state.map((s) => new ort.Tensor('float32', new Float32Array(stateElements(s, 0)), stateShape(s, 0)))
    const rows: LogProbRows = []
    const greedy: number[] = []
    const fed = [...ids]
    for (let t = 0; t < fed.length; t++) {
      const feeds: Record<string, ort.Tensor> = {
        [ONNX_NAMES.inputIds]: new ort.Tensor('int64', BigInt64Array.from([BigInt(fed[t])]), [1, 1]),
        [ONNX_NAMES.positionOffset]: new ort.Tensor('int64', BigInt64Array.from([BigInt(t)]), [1])
      }
      manifest.state.forEach((s, i) => { feeds[s.name] = state[i] })
      const out = await session.run(feeds)
      state = manifest.state.map((s) => out[s.output])
      const row = logSoftmax(out[ONNX_NAMES.logits].data as Float32Array)
      if (t < ids.length) rows.push(row)
      if (t >= ids.length - 1 && greedy.length < extra) {
        greedy.push(argmax(row))
        if (greedy.length < extra) fed.push(greedy[greedy.length - 1])
      }
    }
    return { rows, greedy }
  } finally {
    await session.release()
  }
}

let llama: Llama | undefined

/** llama.cpp (the prebuilt CPU library): the same, with an F32 KV cache and no flash attention, so
 * only the arithmetic differs. llama.cpp's probabilities come from all its logits (greedy sampler:
 * no truncation). */
export async function llamaCppRun (gguf: string, ids: number[], extra: number): Promise<{ rows: LogProbRows, greedy: number[] }> {
  llama ??= await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error })
  const model = await llama.loadModel({ modelPath: gguf })
  const context = await model.createContext({ contextSize: 256, batchSize: 256, flashAttention: false, threads: 1, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' })
  try {
    const sequence = context.getSequence()
    const toRow = (p: Map<Token, number> | undefined): Float64Array => {
      if (p === undefined) throw new Error('llama.cpp returned no probabilities')
      const row = new Float64Array(p.size).fill(-Infinity)
      for (const [id, prob] of p) row[id as unknown as number] = Math.log(prob)
      return row
    }
    // node-llama-cpp brands token ids (Token); ours are plain numbers.
    const item = (id: number): ControlledEvaluateInputItem => [id as unknown as Token, { generateNext: { probabilities: true } }]
    const results = await sequence.controlledEvaluate(ids.map(item))
    const rows = results.map((r) => toRow(r?.next.probabilities))
    const greedy: number[] = []
    let last = argmax(rows[rows.length - 1])
    while (greedy.length < extra) {
      greedy.push(last)
      if (greedy.length === extra) break
      const [r] = await sequence.controlledEvaluate([item(last)])
      last = argmax(toRow(r?.next.probabilities))
    }
    return { rows, greedy }
  } finally {
    await context.dispose()
    await model.dispose()
  }
}
