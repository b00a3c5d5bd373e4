// The Hugging Face files a model folder may carry beside tokenizer.json, as an import copies them
// from the checkpoint: tokenizer_config.json (BOS/EOS strings, add_bos_token, chat_template) and
// generation_config.json (BOS/EOS ids). Both are optional; what they hold is checked here, and
// fields this server does not use are ignored.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'

const nullable = <T extends TSchema>(t: T) => Type.Optional(Type.Union([t, Type.Null()]))
/** A special token as transformers writes it: a string, or an AddedToken object. */
const TokenString = Type.Union([Type.String(), Type.Object({ content: Type.String() })])
const TokenId = Type.Integer({ minimum: 0 })

const TokenizerConfigSchema = Type.Object({
  add_bos_token: nullable(Type.Boolean()),
  bos_token: nullable(TokenString),
  eos_token: nullable(TokenString),
  unk_token: nullable(TokenString),
  pad_token: nullable(TokenString),
  chat_template: nullable(Type.Union([
    Type.String(),
    Type.Array(Type.Object({ name: Type.String(), template: Type.String() }))
  ]))
})

const GenerationConfigSchema = Type.Object({
  bos_token_id: nullable(TokenId),
  eos_token_id: nullable(Type.Union([TokenId, Type.Array(TokenId)]))
})

export interface TokenizerConfig {
  addBosToken: boolean | null
  bosToken: string | null
  eosToken: string | null
  unkToken: string | null
  padToken: string | null
  /** The default chat template (a list of named templates gives its "default" one), or null. */
  chatTemplate: string | null
}

export interface GenerationConfig {
  bosTokenId: number | null
  eosTokenIds: number[]
}

function readJson<T extends TSchema> (dir: string, file: string, schema: T, where: string): Static<T> | null {
  const path = join(dir, file)
  if (!existsSync(path)) return null
  let json: unknown
  try {
    json = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new Error(`${where}/${file}: ${(err as Error).message}`)
  }
  if (!Value.Check(schema, json)) {
    const first = Value.Errors(schema, json).First()
    throw new Error(`${where}/${file}: invalid at ${first?.path || '/'}: ${first?.message ?? 'invalid'}`)
  }
  return json
}

const tokenString = (t: Static<typeof TokenString> | null | undefined): string | null => t == null ? null : typeof t === 'string' ? t : t.content

export function readTokenizerConfig (dir: string, where: string): TokenizerConfig | null {
  const json = readJson(dir, 'tokenizer_config.json', TokenizerConfigSchema, where)
  if (json === null) return null
  const template = json.chat_template
  return {
    addBosToken: json.add_bos_token ?? null,
    bosToken: tokenString(json.bos_token),
    eosToken: tokenString(json.eos_token),
    unkToken: tokenString(json.unk_token),
    padToken: tokenString(json.pad_token),
    chatTemplate: template == null ? null : typeof template === 'string' ? template : template.find((t) => t.name === 'default')?.template ?? null
  }
}

export function readGenerationConfig (dir: string, where: string): GenerationConfig | null {
  const json = readJson(dir, 'generation_config.json', GenerationConfigSchema, where)
  if (json === null) return null
  const eos = json.eos_token_id
  return { bosTokenId: json.bos_token_id ?? null, eosTokenIds: eos == null ? [] : Array.isArray(eos) ? eos : [eos] }
}
