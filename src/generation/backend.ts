// The interface between the generation service and whatever runs a model (TGI's `Backend`): the
// service and the registry hold Backends; src/engine/engine.ts implements one with ONNX Runtime in a
// worker thread. Nothing here knows about tensors' layout, workers or HTTP.
import type { Manifest } from '../models/manifest.ts'
import type { TextTokenizer } from '../tokenizer/tokenizer.ts'

/** How to choose each token (src/engine/sampler.ts implements them, in HF/TGI order). */
export interface SamplingParams {
  temperature: number        // 0 = greedy
  topK: number               // 0 = off
  topP: number               // 1 = off
  typicalP: number           // 1 = off
  repetitionPenalty: number  // 1 = off; applied to every token of prompt and output (HF)
  frequencyPenalty: number   // 0 = off; OpenAI: minus count * penalty
  presencePenalty: number    // 0 = off; OpenAI: minus penalty if present
  topLogprobs: number        // alternatives returned per token (0 = none)
}

export const GREEDY: SamplingParams = {
  temperature: 0, topK: 0, topP: 1, typicalP: 1, repetitionPenalty: 1, frequencyPenalty: 0, presencePenalty: 0, topLogprobs: 0
}

export type FinishReason = 'length' | 'stop' | 'eos_token' | 'cancelled'

export interface TokenInfo {
  id: number
  text: string
  logprob: number
  special: boolean
  top: Array<{ id: number, logprob: number }>
}

export interface GenerateRequest {
  inputIds: number[]
  /** Tokens already folded into `state`. */
  position: number
  /** The state to continue from (ownership passes to the backend), or null for the zero state. */
  state: Float32Array[] | null
  params: SamplingParams
  seed: number
  maxNewTokens: number
  stop: string[]
  stopTokenIds: number[]
  /** The text generated starts a document whose decoder drops its first space (SentencePiece). */
  dropLeadingSpace?: boolean
  /** No one continues from this generation (no session): its result's `state` is empty, and the
   * engine copies no state out for it. */
  discardState?: boolean
}

export interface GenerationResult {
  finishReason: FinishReason
  tokens: number[]
  text: string
  /** Tokens in the state after this generation. */
  position: number
  /** Transcript tokens not yet fed into the state (the last sampled token). */
  pending: number[]
  /** The state after this generation; empty where the request had `discardState`. */
  state: Float32Array[]
  queueMs: number
}

/** Receives one generation's output: the transformers.js streamer shape (put / end). */
export interface GenerationSink {
  token (token: TokenInfo, timing: { first: boolean, queueMs: number }): void
  end (result: GenerationResult): void
  error (err: Error): void
}

export interface GenerationHandle {
  cancel (): void
  pause (): void
  resume (): void
}

export interface StepStats { kind: 'prefill' | 'decode', ms: number, batch: number, tokens: number }

export interface Backend {
  readonly name: string
  readonly inFlight: number
  /** How its graphs run, for the load log (e.g. which ONNX Runtime binding); absent where nothing to say. */
  readonly runtimeNote?: string
  submit (req: GenerateRequest, sink: GenerationSink): GenerationHandle
  /** Resolves when every in-flight generation has ended, or after `ms`. */
  drained (ms: number): Promise<void>
  close (): Promise<void>
  /** Every step the backend runs, for metrics. */
  onStep (listener: (stats: StepStats) => void): void
  /** The backend died on its own (not through close()): its model must leave service. */
  onExit (listener: (code: number) => void): void
}

export interface BackendOptions {
  name: string
  modelPath: string
  manifest: Manifest
  tokenizer: TextTokenizer
  /** Compute threads this model may use. */
  threads: number
}

export type StartBackend = (options: BackendOptions) => Promise<Backend>
