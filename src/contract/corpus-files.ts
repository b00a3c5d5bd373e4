// The one writer of corpus folders (contract/corpus-files.json): token-id files, one per split,
// every document followed by the end-of-text token, and meta.json checked against
// contract/corpus-meta.schema.json. scripts/prepare-corpus.ts and conversion jobs both use it; the
// trainer reads the folders (trainer/t2r/data.py).
import { randomUUID } from 'node:crypto'
import { endianness } from 'node:os'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Type } from '@sinclair/typebox'
import { loadChecked } from './load.ts'
import type { CorpusMeta, SplitName } from './schemas.ts'
import { corpusMetaContract } from './validate.ts'

export const CORPUS_FILES = loadChecked('corpus-files.json', Type.Object({
  token_file: Type.String({ pattern: '\\{split\\}' }),
  token_dtype: Type.Literal('uint16'),
  byte_order: Type.Literal('little'),
  meta_file: Type.String()
}))

// Uint16Array uses the platform's byte order; the files are little-endian.
if (endianness() !== 'LE') throw new Error('corpus token-id files are little-endian uint16: big-endian hosts are not supported')

export const MAX_VOCAB = 65536

export function tokenFileName (split: SplitName): string {
  return CORPUS_FILES.token_file.replace('{split}', split)
}

/** Documents as one token-id array, each followed by `eosTokenId`. Copies into one typed array:
 * no argument spreads, so a corpus of any size fits (a spread of 125k ids overflows the stack). */
export async function encodeDocuments (encode: (text: string) => Promise<number[]>, docs: Iterable<string>, eosTokenId: number, vocabSize: number, bosTokenId: number | null = null): Promise<Uint16Array> {
  if (vocabSize > MAX_VOCAB) throw new Error(`token-id files are ${CORPUS_FILES.token_dtype}: vocabularies above ${MAX_VOCAB} are not supported`)
  const parts: number[][] = []
  let total = 0
  for (const doc of docs) {
    const ids = bosTokenId === null ? await encode(doc) : [bosTokenId, ...await encode(doc)]
    parts.push(ids)
    total += ids.length + 1
  }
  const out = new Uint16Array(total)
  let at = 0
  for (const ids of parts) {
    out.set(ids, at)
    at += ids.length
    out[at++] = eosTokenId
  }
  return out
}

export interface SplitData {
  ids: Uint16Array
  /** Extra figures for meta.json (documents, characters), where the writer knows them. */
  addresses?: number
  characters?: number
}

export async function writeTokenFile (path: string, ids: Uint16Array): Promise<void> {
  const partial = `${path}.partial-${randomUUID()}`
  await writeFile(partial, Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength))
  await rename(partial, path)
}

export async function readTokenFile (path: string): Promise<Uint16Array> {
  const buf = await readFile(path)
  return new Uint16Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength))
}

/** Writes a corpus folder: a token-id file per given split and meta.json; -> the meta written. */
export async function writeCorpus (dir: string, vocab: { vocab_size: number, eos_token_id: number, bos_token_id?: number }, splits: Partial<Record<SplitName, SplitData>>): Promise<CorpusMeta> {
  await mkdir(dir, { recursive: true })
  const meta = { vocab_size: vocab.vocab_size, eos_token_id: vocab.eos_token_id, ...(vocab.bos_token_id !== undefined ? { bos_token_id: vocab.bos_token_id } : {}), splits: {} as CorpusMeta['splits'] }
  for (const [split, data] of Object.entries(splits) as Array<[SplitName, SplitData]>) {
    await writeTokenFile(join(dir, tokenFileName(split)), data.ids)
    meta.splits[split] = { tokens: data.ids.length, ...(data.addresses !== undefined ? { addresses: data.addresses } : {}), ...(data.characters !== undefined ? { characters: data.characters } : {}) }
  }
  const checked = corpusMetaContract.parse(meta, join(dir, CORPUS_FILES.meta_file))
  await writeFile(join(dir, CORPUS_FILES.meta_file), JSON.stringify(checked, null, 2) + '\n')
  return checked
}
