import { join } from 'node:path'
import t from 'tap'
import tokenizers from 'tokenizers'
import { addressesOf } from '../../src/corpus/sotu.ts'
import { loadTokenizer } from '../../src/tokenizer/tokenizer.ts'
import { SHIPPED } from '../helpers/fixtures.ts'

const path = join(SHIPPED, 'sotu-base', 'tokenizer.json')

t.test('the shipped tokenizer is byte-level BPE with 8,192 ids, the last one end-of-text', async (t) => {
  const tok = loadTokenizer(path)
  t.equal(tok.vocabSize, 8192)
  t.equal(tok.tokenId('<|endoftext|>'), 8191)
  t.equal(tok.kind, 'byte-level')
  t.equal(tok.stripsLeadingSpace, false)
})

t.test('every test-split address round-trips exactly, through the npm tokenizers package too', async (t) => {
  const tok = loadTokenizer(path)
  const native = tokenizers.Tokenizer.fromFile(path)
  const addresses = addressesOf('test')
  t.equal(addresses.length, 23, 'years ending in 9')
  let tokens = 0
  for (const a of addresses) {
    const ids = await tok.encode(a.text)
    tokens += ids.length
    if (tok.decode(ids) !== a.text) t.fail(`byte decode differs for ${a.year}`)
    if (await native.decode(ids, false) !== a.text) t.fail(`tokenizers decode differs for ${a.year}`)
  }
  const chars = addresses.reduce((n, a) => n + a.text.length, 0)
  t.ok(chars / tokens > 3, `compresses: ${(chars / tokens).toFixed(2)} characters per token`)
})

t.test('text outside the corpus (any bytes) still round-trips', async (t) => {
  const tok = loadTokenizer(path)
  const text = 'naïve café — 漢字 🇺🇸 \u0000\t\r\n'
  t.equal(tok.decode(await tok.encode(text)), text)
})
