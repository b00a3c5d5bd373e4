// A job's data folder in the trainer's format: train.bin from the chosen corpus, test.bin from
// the SOTU test split (held-out perplexity is always measured there), meta.json, all tokenized
// here with the source model's tokenizer: the trainer never tokenizes.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { addressesOf, type Split } from '../corpus/sotu.ts'
import type { LoadedModel } from '../models/registry.ts'

async function encodeDocs (model: LoadedModel, docs: string[]): Promise<Uint16Array> {
  if (model.manifest.vocab_size > 65536) throw new Error('token-id files are uint16: vocabularies above 65,536 are not supported')
  const ids: number[] = []
  for (const doc of docs) ids.push(...await model.tokenizer.encode(doc), model.manifest.eos_token_id)
  return Uint16Array.from(ids)
}

function write (path: string, ids: Uint16Array): void {
  writeFileSync(path, Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength))
}

/** The SOTU splits for this model's tokenizer, tokenized once and cached under `cacheDir`. */
export async function sotuSplit (model: LoadedModel, split: Split, cacheDir: string): Promise<Uint16Array> {
  const dir = join(cacheDir, model.name)
  const path = join(dir, `${split}.bin`)
  if (!existsSync(path)) {
    mkdirSync(dir, { recursive: true })
    write(path, await encodeDocs(model, addressesOf(split).map((a) => a.text)))
  }
  const buf = readFileSync(path)
  return new Uint16Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength))
}

export async function tokenizeText (model: LoadedModel, text: string): Promise<Uint16Array> {
  return await encodeDocs(model, [text])
}

export function writeJobData (dir: string, model: LoadedModel, train: Uint16Array, test: Uint16Array): void {
  mkdirSync(dir, { recursive: true })
  write(join(dir, 'train.bin'), train)
  write(join(dir, 'test.bin'), test)
  writeFileSync(join(dir, 'meta.json'), JSON.stringify({ vocab_size: model.manifest.vocab_size, eos_token_id: model.manifest.eos_token_id, splits: { train: { tokens: train.length }, test: { tokens: test.length } } }))
}
