// The byte-based streaming detokenizer over a SentencePiece tokenizer with byte fallback: token by
// token it never splits a character, and it ends with exactly the one-shot decode. At a document's
// start it drops the first word's prepended ▁ (as the one-shot decode does); continuing a text it
// keeps it, since that space separates the new word from the text before.
import t from 'tap'
import { addressesOf } from '../../src/corpus/sotu.ts'
import { StreamingDetokenizer } from '../../src/engine/detokenizer.ts'
import { loadTokenizer } from '../../src/tokenizer/tokenizer.ts'
import { spTokenizerPath } from '../helpers/hf-fixtures.ts'

const tok = loadTokenizer(spTokenizerPath())

function stream (ids: number[], dropLeadingSpace: boolean, stops: string[] = []): { pieces: string[], stop?: string } {
  const d = new StreamingDetokenizer((id) => tok.tokenBytes(id), stops, dropLeadingSpace)
  const pieces: string[] = []
  for (const id of ids) {
    const r = d.push(id)
    pieces.push(r.text)
    if (r.stop !== undefined) return { pieces, stop: r.stop }
  }
  pieces.push(d.finish())
  return { pieces }
}

// The corpus has no line breaks: its sentences are laid out as paragraphs here.
const address = addressesOf('test').find((a) => /[^\x00-\x7f]/.test(a.text))!
const paragraphs = address.text.slice(0, 4000).split(/(?<=\.) /).join('\n\n')
const TEXTS = [
  paragraphs,
  'Emoji are four bytes each: 🇺🇸🎉 and a family 👩‍👩‍👧 — then café, naïve, 漢字.',
  '  starts with two spaces\nand\ttabs'
]

t.test('token by token, no piece splits a character, and the pieces are the one-shot decode', async (t) => {
  for (const text of TEXTS) {
    const ids = await tok.encode(text)
    const { pieces } = stream([1, ...ids], true)
    // A piece with half a character would hold U+FFFD or a lone surrogate (which UTF-8 cannot encode).
    t.ok(pieces.every((p) => !p.includes('\uFFFD') && Buffer.from(p, 'utf8').toString('utf8') === p), 'every piece is whole characters')
    t.ok(pieces.filter((p) => p === '').length > 0 || !/[^\x00-\x7f]/.test(text), 'multi-byte characters were held until complete')
    t.equal(pieces.join(''), tok.decode(ids))
    t.equal(pieces.join(''), text)
  }
})

t.test('a continuation keeps the space of its first word; a document start drops it', async (t) => {
  const ids = await tok.encode('of the Union')
  t.equal(stream(ids, false).pieces.join(''), ' of the Union', 'after a prompt: " of" continues "The state"')
  t.equal(stream(ids, true).pieces.join(''), 'of the Union')
  t.equal(stream([1, 1, ...ids], true).pieces.join(''), 'of the Union', 'special tokens before it change nothing')
  const spaced = await tok.encode(' of')
  t.equal(tok.tokenBytes(spaced[0]).length, 1, 'a text starting with a space starts with a lone ▁')
  t.equal(stream(spaced, true).pieces.join(''), ' of', 'only the prepended space is dropped')
})

t.test('a stop sequence spelled in byte tokens ends the text before it', async (t) => {
  const ids = await tok.encode('peace — and war')
  const r = stream(ids, true, ['—'])
  t.equal(r.stop, '—')
  t.equal(r.pieces.join(''), 'peace ')
})
