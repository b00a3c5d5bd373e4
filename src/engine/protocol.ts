// Messages between the main thread (engine.ts) and the model's worker thread (worker.ts).
import type { GenerateRequest, GenerationResult, TokenInfo } from '../generation/backend.ts'
import type { Manifest } from '../models/manifest.ts'

export interface RuntimeOptions {
  executionProvider: 'cpu' | 'cuda'
  cudaDevice: number
  intraOpThreads: number
  intraOpSpinning: boolean
  maxBatch: number
  prefillChunk: number
  /** Token events wait at most this long to be posted with later ones (0: every step). */
  streamIntervalMs: number
}

export interface WorkerInit {
  modelPath: string
  manifest: Manifest
  /** Every token's bytes, packed: token i is bytes[offsets[i] .. offsets[i+1]). */
  tokenBytes: Uint8Array
  tokenOffsets: Uint32Array
  runtime: RuntimeOptions
}

export interface WireRequest extends GenerateRequest {
  submittedAt: number
}

export type WireResult = GenerationResult
export type { FinishReason, TokenInfo } from '../generation/backend.ts'

export type ToWorker =
  | { type: 'generate', id: number, req: WireRequest }
  | { type: 'cancel' | 'pause' | 'resume', id: number }
  | { type: 'shutdown' }

export type SeqEvent =
  | { id: number, kind: 'token', token: TokenInfo, first: boolean, queueMs: number }
  | { id: number, kind: 'end', result: WireResult }
  | { id: number, kind: 'error', message: string }

export interface StepRecord { kind: 'prefill' | 'decode', ms: number, batch: number, tokens: number }

export type FromWorker =
  | { type: 'ready', inputs: string[], outputs: string[], binding: string }
  | { type: 'init-error', message: string }
  | { type: 'steps', steps: StepRecord[], events: SeqEvent[] }
