// SentencePiece-style BPE with byte fallback (Llama 2 / Mistral layout), on the fixture tokenizer
// trained on SOTU (test/helpers/sp-tokenizer.ts): exact bytes per token, exact round trips, the
// leading-space rule, and the other decoder form Hugging Face writes (Metaspace).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import tokenizers from 'tokenizers'
import { addressesOf } from '../../src/corpus/sotu.ts'
import { loadTokenizer } from '../../src/tokenizer/tokenizer.ts'
import { SP_VOCAB, spTokenizerPath } from '../helpers/hf-fixtures.ts'

const path = spTokenizerPath()
const tok = loadTokenizer(path)
const vocab = (JSON.parse(readFileSync(path, 'utf8')) as { model: { vocab: Record<string, number> } }).model.vocab
const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8')

const EDGE_CASES = [
  'Hello world',
  ' leading space, trailing space ',
  'several   spaces\tand a tab',
  'lines\n\nwith\r\nbreaks\n',
  'naïve café — “quoted” 1,000½',
  '漢字とかな, 한국어, Ελληνικά',
  'emoji 🇺🇸 👩‍👩‍👧 🎉 at the end 🎉',
  '\u0000 control \u007f bytes',
  ''
]

t.test('the fixture is Llama 2 shaped: specials, 256 byte tokens, pieces, ChatML tokens', async (t) => {
  t.equal(tok.kind, 'sentencepiece')
  t.equal(tok.vocabSize, SP_VOCAB)
  t.equal(tok.stripsLeadingSpace, true)
  t.same([vocab['<unk>'], vocab['<s>'], vocab['</s>'], vocab['<0x00>'], vocab['<0xFF>']], [0, 1, 2, 3, 258])
  t.equal(tok.postProcessorBos, 1, 'the post-processor starts texts with <s>')
  t.same([...tok.specialTokens.keys()].sort(), ['</s>', '<s>', '<unk>', '<|im_end|>', '<|im_start|>'])
})

t.test('every token has its exact bytes: ▁ is a space, <0xNN> one byte, special tokens none', async (t) => {
  t.equal(text(tok.tokenBytes(vocab['▁the'])), ' the')
  t.same([...tok.tokenBytes(vocab['<0x0A>'])], [0x0a])
  t.same([...tok.tokenBytes(vocab['<0xE2>'])], [0xe2])
  for (const special of ['<s>', '</s>', '<unk>', '<|im_start|>', '<|im_end|>']) t.equal(tok.tokenBytes(vocab[special]).length, 0, special)
  t.equal(text(tok.tokenBytes(vocab.A)), 'A')
})

t.test('every test-split address round-trips exactly, as paragraphs too, through the npm tokenizers package too', async (t) => {
  const native = tokenizers.Tokenizer.fromFile(path)
  let tokens = 0
  let chars = 0
  for (const a of addressesOf('test')) {
    // The corpus has no line breaks; each address is also tried with its sentences as paragraphs.
    for (const text of [a.text, a.text.split(/(?<=\.) /).join('\n\n  ')]) {
      const ids = await tok.encode(text)
      tokens += ids.length
      chars += text.length
      if (tok.decode(ids) !== text) t.fail(`decode differs for ${a.year}`)
      if (await native.decode(ids, true) !== text) t.fail(`tokenizers decode differs for ${a.year}`)
      if (text.length > ids.length * tok.maxTokenChars) t.fail(`${a.year}: more characters than ${ids.length} tokens can stand for`)
    }
  }
  t.pass(`${tokens} tokens`)
  t.ok(chars / tokens > 2.5, `compresses: ${(chars / tokens).toFixed(2)} characters per token`)
})

t.test('text outside the vocabulary goes through byte tokens and round-trips', async (t) => {
  for (const s of EDGE_CASES) t.equal(tok.decode(await tok.encode(s)), s, JSON.stringify(s))
  const ids = await tok.encode('🎉')
  t.same(ids.slice(-4), [0xf0, 0x9f, 0x8e, 0x89].map((b) => vocab[`<0x${b.toString(16).toUpperCase()}>`]), 'four byte tokens')
  t.same(await tok.encode('<s>Hi</s>'), [1, ...await tok.encode('Hi'), 2], 'special tokens written in text are those tokens')
})

t.test('as with SentencePiece itself, a literal ▁ in the text reads back as a space', async (t) => {
  const native = tokenizers.Tokenizer.fromFile(path)
  const ids = await tok.encode('a▁b')
  t.equal(tok.decode(ids), 'a b')
  t.equal(await native.decode(ids, true), 'a b')
})

t.test('decoding a document drops the ▁ prepended to its first word, and only that one', async (t) => {
  const hello = await tok.encode('Hello')
  t.equal(text(tok.tokenBytes(hello[0]))[0], ' ', 'the normalizer prepended ▁')
  t.equal(tok.decode(hello), 'Hello')
  t.equal(tok.decode([1, ...hello]), 'Hello', 'after BOS too')
  t.equal(tok.decode(await tok.encode('  two')), '  two', 'spaces the text has are kept')
})

t.test('maxTokenChars is the longest text one token stands for', async (t) => {
  const longest = Object.keys(vocab).reduce((n, piece) => Math.max(n, piece.length), 0)
  t.equal(tok.maxTokenChars, Math.max(longest, '<|im_start|>'.length))
  t.ok(Object.values(vocab).every((id) => tok.tokenBytes(id).length <= tok.maxTokenChars))
})

function variant (edit: (json: Record<string, unknown>) => void): string {
  const json = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>
  edit(json)
  const file = join(mkdtempSync(join(tmpdir(), 'sp-variant-')), 'tokenizer.json')
  writeFileSync(file, JSON.stringify(json))
  return file
}

// Metaspace prepends no ▁ to a text that starts with a space, and the decoder still drops one:
// Hugging Face loses that space too. Otherwise these forms round-trip like Llama 2's.
const METASPACE = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false }
const forms: Record<string, (json: Record<string, unknown>) => void> = {
  'a Metaspace pre-tokenizer (Llama/Mistral exported with legacy=false)': (json) => { json.normalizer = null; json.pre_tokenizer = METASPACE },
  'a Metaspace decoder after ByteFallback': (json) => { json.normalizer = null; json.pre_tokenizer = METASPACE; json.decoder = { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, METASPACE] } }
}
for (const [form, edit] of Object.entries(forms)) {
  t.test(`${form}: the same bytes, decoded as Hugging Face decodes`, async (t) => {
    const file = variant(edit)
    const other = loadTokenizer(file)
    t.equal(other.kind, 'sentencepiece')
    t.equal(other.stripsLeadingSpace, true)
    for (const id of [vocab['▁the'], vocab['<0x0A>'], vocab['</s>']]) t.same(other.tokenBytes(id), tok.tokenBytes(id))
    const native = tokenizers.Tokenizer.fromFile(file)
    for (const s of EDGE_CASES) {
      const ids = await other.encode(s)
      t.equal(other.decode(ids), await native.decode(ids, true), `as tokenizers decodes ${JSON.stringify(s)}`)
      if (!s.startsWith(' ')) t.equal(other.decode(ids), s, JSON.stringify(s))
    }
  })
}

t.test('decoders that are neither kind are refused, naming the file', async (t) => {
  const file = variant((json) => { json.decoder = { type: 'WordPiece', prefix: '##', cleanup: true } })
  t.throws(() => loadTokenizer(file), { message: new RegExp(`${file.replaceAll('/', '\\/')}: unsupported decoder "WordPiece"`) })
})

t.test('a model with more ids than the tokenizer (padded embeddings): the extra ids stand for no text', async (t) => {
  const padded = loadTokenizer(path, { vocabSize: SP_VOCAB + 64 })
  t.equal(padded.vocabSize, SP_VOCAB + 64)
  t.equal(padded.tokenBytes(SP_VOCAB + 63).length, 0)
  t.throws(() => loadTokenizer(path, { vocabSize: SP_VOCAB - 1 }), { message: /more than the model's vocab_size/ })
})
