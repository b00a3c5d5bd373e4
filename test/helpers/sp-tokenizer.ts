// A SentencePiece-style BPE tokenizer.json with byte fallback, laid out as Llama 2's: `<unk>`,
// `<s>`, `</s>`, the 256 byte tokens `<0x00>`..`<0xFF>`, the printable ASCII characters and "▁",
// then "▁"-prefixed word pieces from BPE merges learned on the SOTU train split (the npm `tokenizers`
// trainer over words split at "▁"), and ChatML's `<|im_start|>` / `<|im_end|>` as added special tokens
// (as chat finetunes of Llama/Mistral add them). Everything else (newlines, "—", "é", emoji) is
// spelled with byte tokens. Normalizer Prepend "▁" + Replace " "→"▁", decoder Replace/ByteFallback/
// Fuse/Strip, and a post-processor that starts texts with `<s>`: Llama 2's tokenizer.json.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tokenizers from 'tokenizers'

export const SPECIAL = ['<unk>', '<s>', '</s>'] as const
export const CHAT_TOKENS = ['<|im_start|>', '<|im_end|>'] as const
const SPACE = '▁'

const byteToken = (b: number): string => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`

function learnMerges (texts: string[]): Array<[string, string]> {
  const work = mkdtempSync(join(tmpdir(), 'sp-bpe-'))
  try {
    writeFileSync(join(work, 'corpus.txt'), texts.join('\n'))
    const tokenizer = new tokenizers.Tokenizer(tokenizers.BPE.empty())
    tokenizer.setPreTokenizer(tokenizers.metaspacePreTokenizer(SPACE, 'always', true))
    tokenizer.train([join(work, 'corpus.txt')])
    tokenizer.save(join(work, 'trained.json'))
    const trained = JSON.parse(readFileSync(join(work, 'trained.json'), 'utf8')) as { model: { merges: Array<[string, string] | string> } }
    return trained.model.merges.map((m) => (typeof m === 'string' ? m.split(' ') as [string, string] : m))
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

const added = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })

export function trainSentencePieceBpe (texts: string[], vocabSize: number): Record<string, unknown> {
  const vocab: Record<string, number> = {}
  const add = (token: string): void => { vocab[token] = Object.keys(vocab).length }
  for (const s of SPECIAL) add(s)
  for (let b = 0; b < 256; b++) add(byteToken(b))
  for (let c = 0x21; c <= 0x7e; c++) add(String.fromCharCode(c))
  add(SPACE)
  const budget = vocabSize - CHAT_TOKENS.length
  const merges: Array<[string, string]> = []
  for (const [a, b] of learnMerges(texts)) {
    if (Object.keys(vocab).length >= budget) break
    // Merges of characters outside the alphabet (they are bytes here) cannot apply.
    if (vocab[a] === undefined || vocab[b] === undefined || vocab[a + b] !== undefined) continue
    merges.push([a, b])
    add(a + b)
  }
  if (Object.keys(vocab).length < budget) throw new Error(`the corpus yields too few merges for ${vocabSize} ids`)
  for (const t of CHAT_TOKENS) add(t)
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [...SPECIAL, ...CHAT_TOKENS].map((t) => added(vocab[t], t)),
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: SPACE }, { type: 'Replace', pattern: { String: ' ' }, content: SPACE }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [vocab['<s>']], tokens: ['<s>'] } }
    },
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'Replace', pattern: { String: SPACE }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }]
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges
    }
  }
}
