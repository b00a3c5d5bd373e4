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

/** What tokenizes a job's corpus: a loaded model, or an imported Hugging Face checkpoint. */
export type Tokenizing = Pick<LoadedModel, 'name' | 'manifest' | 'tokenizer'>

export async function tokenize (model: Tokenizing, docs: string[]): Promise<Uint16Array> {
  return await encodeDocuments(async (text) => await model.tokenizer.encode(text), docs, model.manifest.eos_token_id, model.manifest.vocab_size)
}

/** The SOTU splits tokenized with each model's tokenizer, once: kept under `dir` across restarts,
 * and shared by submissions that ask at the same time. */
export class SotuCache {
  private readonly pending = new Map<string, Promise<Uint16Array>>()

  constructor (readonly dir: string) {}

  async split (model: Tokenizing, split: Split): Promise<Uint16Array> {
    const path = join(this.dir, model.name, tokenFileName(split))
    let ids = this.pending.get(path)
    if (ids === undefined) {
      ids = this.load(model, split, path).finally(() => { this.pending.delete(path) })
      this.pending.set(path, ids)
    }
    return await ids
  }

  private async load (model: Tokenizing, split: Split, path: string): Promise<Uint16Array> {
    if (existsSync(path)) return await readTokenFile(path)
    const ids = await tokenize(model, addressesOf(split).map((a) => a.text))
    await mkdir(dirname(path), { recursive: true })
    await writeTokenFile(path, ids)
    return ids
  }
}

export async function writeJobData (dir: string, model: Tokenizing, sotu: SotuCache, train: Uint16Array): Promise<void> {
  await writeCorpus(dir, { vocab_size: model.manifest.vocab_size, eos_token_id: model.manifest.eos_token_id }, {
    train: { ids: train },
    validation: { ids: await sotu.split(model, 'validation') },
    test: { ids: await sotu.split(model, 'test') }
  })
}
