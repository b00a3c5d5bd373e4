// Corpus folders: the one TypeScript writer (used by scripts/prepare-corpus.ts and conversion jobs)
// writes what contract/corpus-meta.schema.json allows, in the layout of contract/corpus-files.json,
// and the real trainer reads back the same token ids.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { CORPUS_FILES, encodeDocuments, readTokenFile, tokenFileName, writeCorpus } from '../../src/contract/corpus-files.ts'
import { corpusMetaContract } from '../../src/contract/validate.ts'
import { TRAINER_DIR } from '../../src/conversions/trainer-process.ts'

const PYTHON = process.env.T2R_PYTHON ?? '/usr/bin/python3'

t.test('a corpus folder written here validates and the trainer reads the same ids', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 't2r-corpus-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  // 200,000 ids in one document: more than an argument spread (ids.push(...doc)) survives.
  const big = Array.from({ length: 200_000 }, (_, i) => i % 1000)
  const encode = async (text: string): Promise<number[]> => (text === 'big' ? big : [1, 2, 3])
  const train = await encodeDocuments(encode, ['big', 'small'], 1023, 1024)
  t.equal(train.length, 200_000 + 1 + 3 + 1, 'every document followed by end-of-text')
  t.same([train[199_999], train[200_000], train[200_004]], [999, 1023, 1023])
  const meta = await writeCorpus(dir, { vocab_size: 1024, eos_token_id: 1023 }, { train: { ids: train }, test: { ids: Uint16Array.from([5, 6, 1023]), addresses: 1, characters: 10 } })

  const written = JSON.parse(readFileSync(join(dir, CORPUS_FILES.meta_file), 'utf8')) as unknown
  t.same(corpusMetaContract.violations(written), [], 'meta.json validates against contract/corpus-meta.schema.json')
  t.same(written, meta)
  t.same(meta.splits, { train: { tokens: 200_005 }, test: { tokens: 3, addresses: 1, characters: 10 } })
  const bytes = readFileSync(join(dir, tokenFileName('test')))
  t.same([...bytes], [5, 0, 6, 0, 0xff, 0x03], 'uint16 little-endian')
  t.same(await readTokenFile(join(dir, tokenFileName('train'))), train)

  const script = 'import json, sys; from t2r.data import load_meta, load_split; d = sys.argv[1]; ' +
    'print(json.dumps({"meta": load_meta(d), "train": load_split(d, "train")[-6:].tolist(), "n": len(load_split(d, "train"))}))'
  const read = JSON.parse(execFileSync(PYTHON, ['-c', script, dir], { cwd: TRAINER_DIR, env: { ...process.env, PYTHONPATH: TRAINER_DIR }, encoding: 'utf8' })) as { meta: unknown, train: number[], n: number }
  t.same(read.meta, meta, 'the trainer reads the same meta.json')
  t.equal(read.n, train.length)
  t.same(read.train, [...train.subarray(-6)], 'and the same ids')
})

t.test('the writer refuses what the contract does not allow', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 't2r-corpus-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  await t.rejects(encodeDocuments(async () => [1], ['x'], 0, 70_000), /vocabularies above 65536/)
  await t.rejects(writeCorpus(dir, { vocab_size: 1024, eos_token_id: -1 }, {}), /breaks contract\/corpus-meta\.schema\.json at \/eos_token_id/)
})
