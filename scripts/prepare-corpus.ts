// Trains the SOTU tokenizer on the train split and writes the token-id files the trainer reads:
//   <out>/tokenizer.json, <out>/{train,validation,test}.bin (uint16 little-endian ids, one
//   end-of-text token after every address, and a begin-of-text token before it with --bos-token)
//   and <out>/meta.json.
// Usage: tsx scripts/prepare-corpus.ts [--out data/sotu] [--vocab 8192] [--tokenizer path]
//          [--eos-token '<|endoftext|>'] [--bos-token '<s>']
//   --tokenizer reuses an existing tokenizer.json instead of training one (byte-level or
//   SentencePiece-style, e.g. Llama's: then --eos-token '</s>' --bos-token '<s>').
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { addressesOf, SPLITS } from '../src/corpus/sotu.ts'
import { EOT_TOKEN, trainByteLevelBpe } from '../src/tokenizer/train-bpe.ts'
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts'

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: 'data/sotu' },
    vocab: { type: 'string', default: '8192' },
    tokenizer: { type: 'string' },
    'eos-token': { type: 'string', default: EOT_TOKEN },
    'bos-token': { type: 'string' }
  },
  strict: true
})
const out = values.out
mkdirSync(out, { recursive: true })
const tokenizerPath = join(out, 'tokenizer.json')
if (values.tokenizer !== undefined) {
  copyFileSync(values.tokenizer, tokenizerPath)
} else {
  const json = trainByteLevelBpe(addressesOf('train').map((a) => a.text), Number(values.vocab))
  writeFileSync(tokenizerPath, JSON.stringify(json))
}
const tokenizer = loadTokenizer(tokenizerPath)
if (tokenizer.vocabSize > 65536) throw new Error(`${tokenizerPath}: ${tokenizer.vocabSize} ids do not fit the uint16 token-id files`)
function idOf (token: string): number {
  const id = tokenizer.tokenId(token)
  if (id === null) throw new Error(`${tokenizerPath}: no token ${token}`)
  return id
}
const eos = idOf(values['eos-token'])
const bos = values['bos-token'] === undefined ? [] : [idOf(values['bos-token'])]
const meta: Record<string, unknown> = { vocab_size: tokenizer.vocabSize, eos_token_id: eos, ...(bos.length > 0 ? { bos_token_id: bos[0] } : {}), splits: {} }
for (const split of SPLITS) {
  const ids: number[] = []
  const addresses = addressesOf(split)
  for (const address of addresses) {
    ids.push(...bos, ...await tokenizer.encode(address.text), eos)
  }
  writeFileSync(join(out, `${split}.bin`), Buffer.from(Uint16Array.from(ids).buffer))
  ;(meta.splits as Record<string, unknown>)[split] = {
    addresses: addresses.length,
    tokens: ids.length,
    characters: addresses.reduce((n, a) => n + a.text.length, 0)
  }
}
writeFileSync(join(out, 'meta.json'), JSON.stringify(meta, null, 2) + '\n')
console.log(JSON.stringify(meta))
