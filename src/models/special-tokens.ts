// A model's special tokens, from its manifest first, then the Hugging Face files beside it
// (hf-config.ts), then its tokenizer.json:
//
//   EOS ids  manifest eos_token_ids, else eos_token_id plus generation_config.json's eos_token_id
//            (an int or a list) and tokenizer_config.json's eos_token.
//   BOS id   manifest bos_token_id, else generation_config.json's, else tokenizer_config.json's
//            bos_token, else the token tokenizer.json's post-processor starts texts with.
//   add BOS  manifest add_bos_token, else tokenizer_config.json's, else whether tokenizer.json's
//            post-processor adds one (Llama 3 says so only there).
//
// The shipped models have none of these: one EOS (eos_token_id), no BOS, as before.
import type { TextTokenizer } from '../tokenizer/tokenizer.ts'
import type { GenerationConfig, TokenizerConfig } from './hf-config.ts'
import type { Manifest } from './manifest.ts'

export interface SpecialTokens {
  /** Every id that ends a generation; the first is the manifest's eos_token_id. */
  eosIds: number[]
  bosId: number | null
  /** Text prompts that start a document (a fresh session, or no session) begin with bosId. */
  addBos: boolean
  /** What chat templates get as bos_token, eos_token, unk_token and pad_token. */
  templateStrings: Record<string, string>
}

export function resolveSpecialTokens (manifest: Manifest, tokenizer: TextTokenizer, tokenizerConfig: TokenizerConfig | null, generationConfig: GenerationConfig | null, where: string): SpecialTokens {
  const idOf = (token: string | null, field: string): number | null => {
    if (token === null) return null
    const id = tokenizer.tokenId(token)
    if (id === null) throw new Error(`${where}/tokenizer_config.json: ${field} ${JSON.stringify(token)} is not a token of tokenizer.json`)
    return id
  }
  const stringOf = (id: number | null): string | null => id === null ? null : [...tokenizer.specialTokens].find(([, v]) => v === id)?.[0] ?? null

  const configEos = idOf(tokenizerConfig?.eosToken ?? null, 'eos_token')
  const eosIds = [...new Set(manifest.eos_token_ids ?? [manifest.eos_token_id, ...(generationConfig?.eosTokenIds ?? []), ...(configEos === null ? [] : [configEos])])]
  const bosId = manifest.bos_token_id !== undefined
    ? manifest.bos_token_id
    : generationConfig?.bosTokenId ?? idOf(tokenizerConfig?.bosToken ?? null, 'bos_token') ?? tokenizer.postProcessorBos
  const addBos = manifest.add_bos_token ?? tokenizerConfig?.addBosToken ?? tokenizer.postProcessorBos !== null
  for (const [field, id] of [...eosIds.map((id) => ['EOS id', id] as const), ['BOS id', bosId] as const]) {
    if (id !== null && id >= tokenizer.vocabSize) throw new Error(`${where}: ${field} ${id} outside the vocabulary (${tokenizer.vocabSize})`)
  }
  if (addBos && bosId === null) throw new Error(`${where}: prompts should start with a BOS token (add_bos_token) but no BOS token is named`)

  const templateStrings: Record<string, string> = {}
  const strings = {
    bos_token: tokenizerConfig?.bosToken ?? stringOf(bosId),
    eos_token: tokenizerConfig?.eosToken ?? stringOf(eosIds[0]),
    unk_token: tokenizerConfig?.unkToken ?? null,
    pad_token: tokenizerConfig?.padToken ?? null
  }
  for (const [name, value] of Object.entries(strings)) if (value !== null) templateStrings[name] = value
  return { eosIds, bosId, addBos, templateStrings }
}
