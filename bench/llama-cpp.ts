// llama.cpp as the benchmark's peer (npm node-llama-cpp, its prebuilt CPU library) on a GGUF of the
// teacher. Every figure is measured the way llama.cpp's own server serves: greedy decode, and many
// streams as N sequences of one context whose pending tokens node-llama-cpp batches into one
// llama_decode per step (one token per sequence per step). Contexts are made per figure and not
// timed; the KV cache is llama.cpp's default (F16).
import { getLlama, LlamaLogLevel, type Llama, type LlamaContext, type LlamaContextSequence, type LlamaModel, type Token } from 'node-llama-cpp'

export interface PeerConfig {
  /** GGUF label, e.g. F32, Q8_0. */
  weights: string
  gguf: string
  threads: number
  flashAttention: boolean
}

export const configLabel = (c: PeerConfig): string => `${c.weights} ${c.threads}t${c.flashAttention ? ' FA' : ''}`

// node-llama-cpp brands token ids (Token); ours are plain numbers.
const asTokens = (ids: number[]): Token[] => ids as unknown as Token[]

let llama: Llama | undefined
const models = new Map<string, LlamaModel>()

/** The one llama.cpp instance (prebuilt CPU library). maxThreads 0: a context gets the thread
 * count it asks for, not a share of a process-wide cap. */
export async function peerLlama (): Promise<Llama> {
  llama ??= await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, maxThreads: 0 })
  return llama
}

export async function loadPeerModel (gguf: string): Promise<LlamaModel> {
  let model = models.get(gguf)
  if (model === undefined) {
    model = await (await peerLlama()).loadModel({ modelPath: gguf })
    models.set(gguf, model)
  }
  return model
}

export async function disposePeerModels (): Promise<void> {
  for (const m of models.values()) await m.dispose()
  models.clear()
}

async function withContext<T> (c: PeerConfig, sequences: number, contextSize: number, use: (ctx: LlamaContext) => Promise<T>): Promise<T> {
  const model = await loadPeerModel(c.gguf)
  const ctx = await model.createContext({
    sequences,
    contextSize,
    batchSize: Math.min(2048, Math.max(512, sequences)),
    threads: { ideal: c.threads, min: c.threads },
    flashAttention: c.flashAttention
  })
  try {
    return await use(ctx)
  } finally {
    await ctx.dispose()
  }
}

/** Greedy generation of `n` tokens after `prompt` on `seq`; -> arrival times (ms) of each token.
 * `stop` ends it early (the TTFT-under-load streams). */
async function generate (seq: LlamaContextSequence, prompt: number[], n: number, stop?: () => boolean): Promise<number[]> {
  const times: number[] = []
  for await (const _ of seq.evaluate(asTokens(prompt), { temperature: 0 })) {
    times.push(performance.now())
    if (times.length >= n || stop?.() === true) break
  }
  return times
}

/** Single-stream decode tokens/s after the first token. */
export async function peerSingle (c: PeerConfig, prompt: number[], n: number): Promise<number> {
  return await withContext(c, 1, prompt.length + n + 16, async (ctx) => {
    const t = await generate(ctx.getSequence(), prompt, n)
    return (t.length - 1) / ((t[t.length - 1] - t[0]) / 1000)
  })
}

/** N streams in one context, each `n` tokens after its own prompt; -> aggregate tokens/s from the
 * start (prompt prefill included, as for our HTTP streams). */
export async function peerStreams (c: PeerConfig, prompts: number[][], n: number): Promise<number> {
  const longest = Math.max(...prompts.map((p) => p.length))
  return await withContext(c, prompts.length, longest + n + 16, async (ctx) => {
    const seqs = prompts.map(() => ctx.getSequence())
    const t0 = performance.now()
    const counts = await Promise.all(seqs.map(async (s, i) => (await generate(s, prompts[i], n)).length))
    return counts.reduce((a, b) => a + b, 0) / ((performance.now() - t0) / 1000)
  })
}

/** Mean ms per decoded token at each position: one sequence filled from `corpus` by prefill up to
 * each position in turn, then `steps` greedy tokens timed there (they count toward the next fill). */
export async function peerPositions (c: PeerConfig, corpus: number[], positions: number[], steps: number): Promise<Record<number, number>> {
  const max = Math.max(...positions)
  return await withContext(c, 1, max + steps + 16, async (ctx) => {
    const seq = ctx.getSequence()
    const out: Record<number, number> = {}
    for (const p of [...positions].sort((a, b) => a - b)) {
      const at = seq.nextTokenIndex
      if (p - 1 > at) await seq.evaluateWithoutGeneratingNewTokens(asTokens(corpus.slice(at, p - 1)))
      const t = await generate(seq, corpus.slice(seq.nextTokenIndex, seq.nextTokenIndex + 1), steps + 1)
      out[p] = meanStep(t)
    }
    return out
  })
}

/** Prefill tokens/s of `prompt` (time to its first generated token). */
export async function peerPrefill (c: PeerConfig, prompt: number[]): Promise<number> {
  return await withContext(c, 1, prompt.length + 16, async (ctx) => {
    const t0 = performance.now()
    const [first] = await generate(ctx.getSequence(), prompt, 1)
    return prompt.length / ((first - t0) / 1000)
  })
}

/** Time to first token (ms) of a new stream while `load` streams decode in the same context. */
export async function peerTtftUnderLoad (c: PeerConfig, prompt: number[], load: number, maxTokens: number): Promise<number> {
  return await withContext(c, load + 1, prompt.length + maxTokens + 16, async (ctx) => {
    let stop = false
    let started = 0
    let allStarted!: () => void
    const running = new Promise<void>((resolve) => { allStarted = resolve })
    const streams = Array.from({ length: load }, async () => {
      let first = true
      await generate(ctx.getSequence(), prompt, maxTokens, () => {
        if (first) { first = false; if (++started === load) allStarted() }
        return stop
      })
    })
    await running
    const t0 = performance.now()
    const [first] = await generate(ctx.getSequence(), prompt, 1)
    stop = true
    await Promise.all(streams)
    return first - t0
  })
}

/** Mean ms between the first and last of token arrival times: robust to tokens that arrive in
 * bursts (a busy event loop delivers several steps' messages at once), unlike a median gap. */
export const meanStep = (times: number[]): number => (times[times.length - 1] - times[0]) / (times.length - 1)

export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}
