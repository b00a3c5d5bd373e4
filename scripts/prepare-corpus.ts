// Trains the SOTU tokenizer on the train split and writes the corpus folder the trainer reads
// (contract/corpus-files.json, through the one writer in src/contract/corpus-files.ts):
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
import { encodeDocuments, writeCorpus, type SplitData } from '../src/contract/corpus-files.ts'
import { addressesOf, SPLITS, type Split } from '../src/corpus/sotu.ts'
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
function idOf (token: string): number {
  const id = tokenizer.tokenId(token)
  if (id === null) throw new Error(`${tokenizerPath}: no token ${token}`)
  return id
}
const eos = idOf(values['eos-token'])
const bos = values['bos-token'] === undefined ? null : idOf(values['bos-token'])
const splits: Partial<Record<Split, SplitData>> = {}
for (const split of SPLITS) {
  const texts = addressesOf(split).map((a) => a.text)
  splits[split] = {
    ids: await encodeDocuments(async (text) => await tokenizer.encode(text), texts, eos, tokenizer.vocabSize, bos),
    addresses: texts.length,
    characters: texts.reduce((n, t) => n + t.length, 0)
  }
}
const meta = await writeCorpus(out, { vocab_size: tokenizer.vocabSize, eos_token_id: eos, ...(bos !== null ? { bos_token_id: bos } : {}) }, splits)
console.log(JSON.stringify(meta))
