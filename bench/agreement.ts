// Before timing anything the benchmark checks that llama.cpp and we compute the same thing: the
// teacher's log-probability of every next token on the same held-out windows (non-overlapping
// windows of `seq` tokens, each from an empty context, as `python3 -m t2r evaluate` scores), ours
// from the model folder's ONNX graph in onnxruntime-node, llama.cpp's from the GGUF. Perplexities
// must agree to a relative tolerance and every token's log-probability to an absolute one (a
// different model can land on a similar perplexity; it cannot match token by token).
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import ort from '#onnxruntime'
import type { ControlledEvaluateInputItem, Token } from 'node-llama-cpp'
import { ONNX_NAMES } from '../src/contract/onnx-io.ts'
import { createSession } from '../src/engine/ort-session.ts'
import { parseManifest, stateShape } from '../src/models/manifest.ts'
import { peerLlama } from './llama-cpp.ts'

/** log p(window[t + 1] | window[..t]) for each window and t < seq. */
export type TokenLogProbs = Float64Array[]

export function windowsOf (ids: Uint16Array, seq: number, count: number): number[][] {
  const n = Math.min(count, Math.floor((ids.length - 1) / seq))
  return Array.from({ length: n }, (_, w) => Array.from(ids.subarray(w * seq, w * seq + seq + 1)))
}

export const perplexity = (lp: TokenLogProbs): number => {
  let sum = 0
  let n = 0
  for (const row of lp) for (const x of row) { sum -= x; n++ }
  return Math.exp(sum / n)
}

/** Our ONNX graph, `batch` windows side by side (all of them by default), one position per run (as
 * the engine decodes). scripts/onnx-perplexity.ts scores quantized folders with it too. */
export async function onnxTokenLogProbs (modelDir: string, windows: number[][], { threads = 2, batch = windows.length }: { threads?: number, batch?: number } = {}): Promise<TokenLogProbs> {
  const manifest = parseManifest(JSON.parse(readFileSync(join(modelDir, 'model.json'), 'utf8')), modelDir)
  const session = await createSession(join(modelDir, 'model.onnx'), { executionProvider: 'cpu', cudaDevice: 0, intraOpThreads: threads })
  const seq = windows[0].length - 1
  const out = windows.map(() => new Float64Array(seq))
  try {
    for (let first = 0; first < windows.length; first += batch) {
      const group = windows.slice(first, first + batch)
      const B = group.length
      let state: ort.Tensor[] = manifest.state.map((s) => new ort.Tensor('float32', new Float32Array(stateShape(s, 0, B).reduce((a, b) => a * b, 1)), stateShape(s, 0, B)))
      for (let t = 0; t < seq; t++) {
        const feeds: Record<string, ort.Tensor> = {
          [ONNX_NAMES.inputIds]: new ort.Tensor('int64', BigInt64Array.from(group, (w) => BigInt(w[t])), [B, 1]),
          [ONNX_NAMES.positionOffset]: new ort.Tensor('int64', new BigInt64Array(B).fill(BigInt(t)), [B])
        }
        manifest.state.forEach((s, i) => { feeds[s.name] = state[i] })
        const res = await session.run(feeds)
        state = manifest.state.map((s) => res[s.output])
        const logits = res[ONNX_NAMES.logits].data as Float32Array
        const V = logits.length / B
        for (let b = 0; b < B; b++) {
          const row = logits.subarray(b * V, (b + 1) * V)
          let max = -Infinity
          for (let i = 0; i < V; i++) max = Math.max(max, row[i])
          let sum = 0
          for (let i = 0; i < V; i++) sum += Math.exp(row[i] - max)
          out[first + b][t] = row[group[b][t + 1]] - max - Math.log(sum)
        }
      }
    }
    return out
  } finally {
    await session.release()
  }
}

/** llama.cpp on the GGUF: F32 KV cache and no flash attention, so only the arithmetic differs.
 * Probabilities come from all its logits (no truncation). */
export async function llamaCppTokenLogProbs (gguf: string, windows: number[][], threads = 1): Promise<TokenLogProbs> {
  const model = await (await peerLlama()).loadModel({ modelPath: gguf })
  const seq = windows[0].length - 1
  // Room past the window: with the context exactly full, the last position's probabilities come
  // out wrong (measured: |Δ log p| 0.28 at position 255 of 256 on a 125 M model, 2e-3 on the
  // shipped teacher, every other position within 1e-5).
  const context = await model.createContext({ contextSize: seq + 16, batchSize: seq, flashAttention: false, threads, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' })
  try {
    const sequence = context.getSequence()
    const out: TokenLogProbs = []
    for (const [w, window] of windows.entries()) {
      await sequence.clearHistory()
      const input = window.slice(0, seq).map((id): ControlledEvaluateInputItem => [id as unknown as Token, { generateNext: { probabilities: true } }])
      const results = await sequence.controlledEvaluate(input)
      out.push(Float64Array.from({ length: seq }, (_, t) => {
        const p = results[t]?.next.probabilities?.get(window[t + 1] as unknown as Token)
        if (p === undefined || p <= 0) throw new Error(`window ${w}, position ${t}: no probability for token ${window[t + 1]}`)
        return Math.log(p)
      }))
    }
    return out
  } finally {
    await context.dispose()
    await model.dispose()
  }
}

export interface Agreement {
  ours: number
  llamaCpp: number
  relativeDifference: number
  maxTokenLogProbDifference: number
  tokens: number
}

export function compare (ours: TokenLogProbs, theirs: TokenLogProbs): Agreement {
  let maxDiff = 0
  ours.forEach((row, w) => row.forEach((x, t) => { maxDiff = Math.max(maxDiff, Math.abs(x - theirs[w][t])) }))
  const a = perplexity(ours)
  const b = perplexity(theirs)
  return { ours: a, llamaCpp: b, relativeDifference: Math.abs(a - b) / b, maxTokenLogProbDifference: maxDiff, tokens: ours.length * ours[0].length }
}

export class AgreementError extends Error {}

/** `a` unless it is outside the tolerances: then an AgreementError naming both figures. */
export function refuseUnlessAgree (a: Agreement, tolerance: { perplexity: number, logProb: number }, gguf: string, modelDir: string): Agreement {
  if (!(a.relativeDifference <= tolerance.perplexity) || !(a.maxTokenLogProbDifference <= tolerance.logProb)) {
    throw new AgreementError(`${gguf} does not compute ${modelDir}: perplexity ${a.llamaCpp.toFixed(4)} vs ours ${a.ours.toFixed(4)} on ${a.tokens} tokens (relative difference ${a.relativeDifference.toExponential(2)}, tolerance ${tolerance.perplexity}; max |Δ log p| ${a.maxTokenLogProbDifference.toExponential(2)}, tolerance ${tolerance.logProb})`)
  }
  return a
}

export async function checkAgreement (modelDir: string, gguf: string, windows: number[][], tolerance: { perplexity: number, logProb: number }): Promise<Agreement> {
  return refuseUnlessAgree(compare(await onnxTokenLogProbs(modelDir, windows), await llamaCppTokenLogProbs(gguf, windows)), tolerance, gguf, modelDir)
}
