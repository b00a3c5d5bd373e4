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
  /**
   * A chat turn: the prompt is a chat template's rendering (it writes BOS itself), generation also
   * stops on the template's end-of-turn token, and on a session the turn was prepared for the
   * tokens (consumed and pending) the session held then.
   */
  chat?: { endOfTurnId: number | null, sessionTokens: number | null }
}

export type { SamplingParams }
export type { FinishReason, GenerationHandle, GenerationResult, GenerationSink, TokenInfo } from './backend.ts'
