// Trains a byte-level BPE tokenizer with the `tokenizers` package and cuts it to a fixed vocabulary.
//
// The Node bindings expose `Tokenizer.train` but not the trainer's options (vocabulary size,
// special tokens, initial alphabet). BPE merges are learned in order and each merge only uses
// symbols made by earlier merges, so the first K merges of a larger run are exactly a K-merge
// tokenizer. We train once, keep the 256-symbol byte alphabet (so every input is encodable) plus
// the first merges that fit, and append the end-of-text token as the last id.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tokenizers from 'tokenizers'

export const EOT_TOKEN = '<|endoftext|>'

interface TrainedBpe {
  model: { vocab: Record<string, number>, merges: Array<[string, string] | string> }
}

export interface BpeTokenizerJson {
  version: string
  added_tokens: unknown[]
  model: { type: 'BPE', vocab: Record<string, number>, merges: Array<[string, string]> } & Record<string, unknown>
  [key: string]: unknown
}

export function trainByteLevelBpe (texts: string[], vocabSize: number): BpeTokenizerJson {
  const { Tokenizer, BPE, byteLevelPreTokenizer, byteLevelAlphabet } = tokenizers
  const alphabet = byteLevelAlphabet()
  const mergeBudget = vocabSize - alphabet.length - 1
  if (mergeBudget < 0) throw new Error(`vocabSize must be at least ${alphabet.length + 1}`)

  const work = mkdtempSync(join(tmpdir(), 'bpe-'))
  try {
    const corpus = join(work, 'corpus.txt')
    writeFileSync(corpus, texts.join('\n'))
    const tokenizer = new Tokenizer(BPE.empty())
    tokenizer.setPreTokenizer(byteLevelPreTokenizer(false, true))
    tokenizer.train([corpus])
    const saved = join(work, 'trained.json')
    tokenizer.save(saved)
    const trained = JSON.parse(readFileSync(saved, 'utf8')) as TrainedBpe
    const merges = trained.model.merges
      .map((m): [string, string] => (typeof m === 'string' ? (m.split(' ') as [string, string]) : m))
    if (merges.length < mergeBudget) {
      throw new Error(`corpus yields only ${merges.length} merges; ${mergeBudget} are needed`)
    }

    const vocab: Record<string, number> = {}
    for (const symbol of [...alphabet].sort()) vocab[symbol] = Object.keys(vocab).length
    const kept: Array<[string, string]> = []
    for (const [a, b] of merges) {
      if (kept.length === mergeBudget) break
      const merged = a + b
      if (vocab[merged] !== undefined) continue
      kept.push([a, b])
      vocab[merged] = Object.keys(vocab).length
    }
    const eotId = Object.keys(vocab).length
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [{
        id: eotId, content: EOT_TOKEN, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true
      }],
      normalizer: null,
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      post_processor: null,
      decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
        vocab,
        merges: kept
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}
