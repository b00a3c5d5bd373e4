// A job's data folder in the trainer's format (contract/corpus-files.json): train.bin from the
// chosen corpus; validation.bin and test.bin from the SOTU splits (progress is scored on a sample
// of validation, the finished model on test); meta.json. All tokenized here with the source
// model's tokenizer: the trainer never tokenizes.
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { encodeDocuments, readTokenFile, tokenFileName, writeCorpus, writeTokenFile } from '../contract/corpus-files.ts'
import { addressesOf, type Split } from '../corpus/sotu.ts'
import type { LoadedModel } from '../models/registry.ts'

export async function tokenize (model: LoadedModel, docs: string[]): Promise<Uint16Array> {
  return await encodeDocuments(async (text) => await model.tokenizer.encode(text), docs, model.manifest.eos_token_id, model.manifest.vocab_size)
}

/** The SOTU splits for this model's tokenizer, tokenized once and cached under `cacheDir`. */
export async function sotuSplit (model: LoadedModel, split: Split, cacheDir: string): Promise<Uint16Array> {
  const path = join(cacheDir, model.name, tokenFileName(split))
  if (existsSync(path)) return await readTokenFile(path)
  const ids = await tokenize(model, addressesOf(split).map((a) => a.text))
  await mkdir(dirname(path), { recursive: true })
  await writeTokenFile(path, ids)
  return ids
}

export async function writeJobData (dir: string, model: LoadedModel, cacheDir: string, train: Uint16Array): Promise<void> {
  await writeCorpus(dir, model.manifest, {
    train: { ids: train },
    validation: { ids: await sotuSplit(model, 'validation', cacheDir) },
    test: { ids: await sotuSplit(model, 'test', cacheDir) }
  })
}
