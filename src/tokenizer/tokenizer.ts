// The server-side tokenizer: text to ids with the model's own `tokenizer.json`, and ids to the exact
// bytes they stand for. Byte-level BPE maps every byte to one printable symbol (GPT-2's table), so
// a token's bytes are its vocabulary string read back through that table; streaming decoding then
// works on bytes and can never split a character wrongly (see ../engine/detokenizer.ts).
import { readFileSync } from 'node:fs'
import tokenizers from 'tokenizers'
import { EOT_TOKEN } from './train-bpe.ts'

export interface TextTokenizer {
  readonly vocabSize: number
  readonly eosTokenId: number
  /** The most characters one token can stand for (its bytes, or a special token's written form). */
  readonly maxTokenChars: number
  encode (text: string): Promise<number[]>
  decode (ids: readonly number[]): string
  tokenBytes (id: number): Uint8Array
}

/** GPT-2's byte-to-symbol table: printable bytes map to themselves, the rest to U+0100 onward. */
function byteLevelSymbols (): Map<string, number> {
  const printable: number[] = []
  for (let b = 33; b <= 126; b++) printable.push(b)
  for (let b = 161; b <= 172; b++) printable.push(b)
  for (let b = 174; b <= 255; b++) printable.push(b)
  const table = new Map<string, number>()
  let extra = 0
  for (let b = 0; b < 256; b++) {
    const code = printable.includes(b) ? b : 256 + extra++
    table.set(String.fromCodePoint(code), b)
  }
  return table
}

export function loadTokenizer (path: string, eosToken = EOT_TOKEN): TextTokenizer {
  const json = JSON.parse(readFileSync(path, 'utf8')) as {
    decoder?: { type?: string } | null
    model?: { vocab?: Record<string, number> }
    added_tokens?: Array<{ id: number, content: string }>
  }
  if (json.decoder?.type !== 'ByteLevel' || json.model?.vocab === undefined) {
    throw new Error(`${path}: only byte-level BPE tokenizers are supported (decoder.type must be "ByteLevel")`)
  }
  const native = tokenizers.Tokenizer.fromFile(path)
  const symbols = byteLevelSymbols()
  const vocabSize = native.getVocabSize(true)
  const bytes: Uint8Array[] = new Array(vocabSize).fill(new Uint8Array(0))
  for (const [token, id] of Object.entries(json.model.vocab)) {
    bytes[id] = Uint8Array.from([...token].map((ch) => {
      const b = symbols.get(ch)
      if (b === undefined) throw new Error(`${path}: token ${JSON.stringify(token)} is not byte-level`)
      return b
    }))
  }
  // Special tokens stand for no text of their own.
  for (const added of json.added_tokens ?? []) bytes[added.id] = new Uint8Array(0)
  const eosTokenId = native.tokenToId(eosToken)
  if (eosTokenId === null) throw new Error(`${path}: no ${eosToken} token`)
  const utf8 = new TextDecoder()
  const maxTokenChars = [...bytes.map((b) => b.length), ...(json.added_tokens ?? []).map((a) => a.content.length)].reduce((a, b) => Math.max(a, b), 1)

  return {
    vocabSize,
    eosTokenId,
    maxTokenChars,
    async encode (text) {
      const encoding = await native.encode(text, null, { addSpecialTokens: false })
      return encoding.getIds()
    },
    decode (ids) {
      return utf8.decode(concatBytes(ids.map((id) => bytes[id] ?? new Uint8Array(0))))
    },
    tokenBytes (id) {
      const b = bytes[id]
      if (b === undefined) throw new RangeError(`token id ${id} outside the vocabulary (${vocabSize})`)
      return b
    }
  }
}

export function concatBytes (parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}
