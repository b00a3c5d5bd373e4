// The server-side tokenizer: text to ids with the model's own `tokenizer.json` (the npm `tokenizers`
// package runs its normalizer, pre-tokenizer and model), and ids to the exact bytes they stand for.
// Two kinds are supported: byte-level BPE (GPT-2, Llama 3, Qwen2) and SentencePiece-style BPE with
// byte fallback (Llama 2, Mistral). Either way every token has exact bytes (special tokens none), so
// streaming decoding works on bytes and can never split a character wrongly (../engine/detokenizer.ts).
import { readFileSync } from 'node:fs'
import tokenizers from 'tokenizers'
import { byteLevelBytes } from './byte-level.ts'
import { pieceBytes, pieceRules } from './sentencepiece.ts'

export type TokenizerKind = 'byte-level' | 'sentencepiece'

export interface TextTokenizer {
  readonly kind: TokenizerKind
  /** Ids the model has: the tokenizer's own, plus any padding rows of the model's vocabulary. */
  readonly vocabSize: number
  /** The most characters one token can stand for (its bytes, or a special token's written form). */
  readonly maxTokenChars: number
  /** Decoding a document drops one leading space (SentencePiece: the "▁" prepended to its first word). */
  readonly stripsLeadingSpace: boolean
  /** Special added tokens by their written form (`<s>`, `<|im_end|>`): the text encode() maps to one id. */
  readonly specialTokens: ReadonlyMap<string, number>
  /** The special token the tokenizer's post-processor puts before every text (Llama's BOS), if any. */
  readonly postProcessorBos: number | null
  encode (text: string): Promise<number[]>
  /** The text of a document made of these tokens (special tokens skipped), as Hugging Face decodes it. */
  decode (ids: readonly number[]): string
  tokenBytes (id: number): Uint8Array
  tokenId (token: string): number | null
}

interface AddedTokenJson { id: number, content: string, special?: boolean }
interface ProcessorJson {
  type?: string
  processors?: ProcessorJson[]
  single?: Array<{ SpecialToken?: { id: string } }>
  special_tokens?: Record<string, { ids?: number[] }>
}
interface TokenizerJson {
  decoder?: { type?: string } | null
  post_processor?: ProcessorJson | null
  model?: { type?: string, vocab?: Record<string, number> }
  added_tokens?: AddedTokenJson[]
}

export interface LoadOptions {
  /** The model's vocabulary size when it has more rows than the tokenizer has ids (padding). */
  vocabSize?: number
}

/** How a vocabulary string becomes bytes, for the tokenizer kind its decoder names. */
function vocabularyReader (json: TokenizerJson, path: string): { kind: TokenizerKind, bytesOf: (token: string) => Uint8Array, stripsLeadingSpace: boolean } {
  if (json.model?.type !== undefined && json.model.type !== 'BPE') throw new Error(`${path}: model.type ${json.model.type} is not supported (only BPE)`)
  if (json.decoder?.type === 'ByteLevel') return { kind: 'byte-level', bytesOf: (t) => byteLevelBytes(t, path), stripsLeadingSpace: false }
  const rules = pieceRules(json.decoder)
  if (rules !== null) return { kind: 'sentencepiece', bytesOf: (t) => pieceBytes(t, rules), stripsLeadingSpace: rules.stripsLeadingSpace }
  throw new Error(`${path}: unsupported decoder ${JSON.stringify(json.decoder?.type ?? null)}: byte-level BPE (decoder ByteLevel) and SentencePiece-style BPE (decoder Replace "▁"/ByteFallback/Fuse/Strip, or Metaspace) are supported`)
}

/** Llama's `TemplateProcessing` post-processor writes `<s>` before every single text. */
function postProcessorBos (p: ProcessorJson | null | undefined): number | null {
  if (p == null) return null
  if (p.type === 'Sequence') {
    for (const inner of p.processors ?? []) {
      const id = postProcessorBos(inner)
      if (id !== null) return id
    }
    return null
  }
  const first = p.type === 'TemplateProcessing' ? p.single?.[0]?.SpecialToken?.id : undefined
  return first === undefined ? null : p.special_tokens?.[first]?.ids?.[0] ?? null
}

export function loadTokenizer (path: string, options: LoadOptions = {}): TextTokenizer {
  const json = JSON.parse(readFileSync(path, 'utf8')) as TokenizerJson
  if (json.model?.vocab === undefined) throw new Error(`${path}: no model.vocab`)
  const { kind, bytesOf, stripsLeadingSpace } = vocabularyReader(json, path)
  const native = tokenizers.Tokenizer.fromFile(path)
  const own = native.getVocabSize(true)
  if (options.vocabSize !== undefined && options.vocabSize < own) throw new Error(`${path}: the tokenizer has ${own} ids, more than the model's vocab_size ${options.vocabSize}`)
  const vocabSize = options.vocabSize ?? own
  // Ids without a token (padding rows of the model) stand for no text.
  const bytes: Uint8Array[] = new Array(vocabSize).fill(new Uint8Array(0))
  for (const [token, id] of Object.entries(json.model.vocab)) bytes[id] = bytesOf(token)
  const utf8 = new TextEncoder()
  const specialTokens = new Map<string, number>()
  for (const added of json.added_tokens ?? []) {
    // Special tokens stand for no text of their own; other added tokens decode to what they say.
    if (added.special !== false) specialTokens.set(added.content, added.id)
    bytes[added.id] = added.special !== false ? new Uint8Array(0) : utf8.encode(added.content)
  }
  const maxTokenChars = [...bytes.map((b) => b.length), ...(json.added_tokens ?? []).map((a) => a.content.length)].reduce((a, b) => Math.max(a, b), 1)
  const text = new TextDecoder()

  return {
    kind,
    vocabSize,
    maxTokenChars,
    stripsLeadingSpace,
    specialTokens,
    postProcessorBos: postProcessorBos(json.post_processor),
    async encode (input) {
      const encoding = await native.encode(input, null, { addSpecialTokens: false })
      return encoding.getIds()
    },
    decode (ids) {
      const decoded = text.decode(concatBytes(ids.map((id) => bytes[id] ?? new Uint8Array(0))))
      return stripsLeadingSpace && decoded.startsWith(' ') ? decoded.slice(1) : decoded
    },
    tokenBytes (id) {
      const b = bytes[id]
      if (b === undefined) throw new RangeError(`token id ${id} outside the vocabulary (${vocabSize})`)
      return b
    },
    tokenId (token) {
      return native.tokenToId(token)
    }
  }
}

export function concatBytes (parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}
