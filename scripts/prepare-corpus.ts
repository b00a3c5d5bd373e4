// Trains the SOTU tokenizer on the train split and writes the corpus folder the trainer reads
// (contract/corpus-files.json, through the one writer in src/contract/corpus-files.ts):
//   <out>/tokenizer.json, <out>/{train,validation,test}.bin (uint16 little-endian ids, one
//   end-of-text token after every address) and <out>/meta.json.
// Usage: tsx scripts/prepare-corpus.ts [--out data/sotu] [--vocab 8192] [--tokenizer path]
//   --tokenizer reuses an existing tokenizer.json instead of training one.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { encodeDocuments, writeCorpus, type SplitData } from '../src/contract/corpus-files.ts'
import { addressesOf, SPLITS, type Split } from '../src/corpus/sotu.ts'
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
const splits: Partial<Record<Split, SplitData>> = {}
for (const split of SPLITS) {
  const texts = addressesOf(split).map((a) => a.text)
  splits[split] = {
    ids: await encodeDocuments(async (text) => await tokenizer.encode(text), texts, tokenizer.eosTokenId, tokenizer.vocabSize),
    addresses: texts.length,
    characters: texts.reduce((n, t) => n + t.length, 0)
  }
}
const meta = await writeCorpus(out, { vocab_size: tokenizer.vocabSize, eos_token_id: tokenizer.eosTokenId }, splits)
console.log(JSON.stringify(meta))
