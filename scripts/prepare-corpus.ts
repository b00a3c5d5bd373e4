// Trains the SOTU tokenizer on the train split and writes the token-id files the trainer reads:
//   <out>/tokenizer.json, <out>/{train,validation,test}.bin (uint16 little-endian ids, one
//   end-of-text token after every address) and <out>/meta.json.
// Usage: tsx scripts/prepare-corpus.ts [--out data/sotu] [--vocab 8192] [--tokenizer path]
//   --tokenizer reuses an existing tokenizer.json instead of training one.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { addressesOf, SPLITS } from '../src/corpus/sotu.ts'
import { trainByteLevelBpe } from '../src/tokenizer/train-bpe.ts'
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts'

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: 'data/sotu' },
    vocab: { type: 'string', default: '8192' },
    tokenizer: { type: 'string' }
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
const meta: Record<string, unknown> = { vocab_size: tokenizer.vocabSize, eos_token_id: tokenizer.eosTokenId, splits: {} }
for (const split of SPLITS) {
  const ids: number[] = []
  const addresses = addressesOf(split)
  for (const address of addresses) {
    ids.push(...await tokenizer.encode(address.text), tokenizer.eosTokenId)
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
