// What a route asks the generation service for, after validation: one shape for every API.
import type { Tenant } from '../auth/tenant.ts'
import type { SamplingParams } from './backend.ts'
import type { LoadedModel } from '../models/registry.ts'

export interface GenerationSpec {
  model: LoadedModel
  prompt: string | number[]
  sessionId: string | null
  /** The caller: a session_id must name one of its sessions (src/sessions/ownership.ts). */
  tenant: Tenant
  maxNewTokens: number
  params: SamplingParams
  seed: number | null
  stop: string[]
  ignoreEos: boolean
}

export type { SamplingParams }
export type { FinishReason, GenerationHandle, GenerationResult, GenerationSink, TokenInfo } from './backend.ts'
