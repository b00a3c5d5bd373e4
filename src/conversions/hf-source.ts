// A conversion whose source is a Hugging Face checkpoint folder under the imports folder
// (--imports-dir): the folder is found without trusting what lies there (containedPath), then the
// trainer imports it (`t2r import`, which checks every file, tensor and token id and refuses a
// symlink leading out of the checkpoint) into the job's folder, never into models/. A checkpoint
// the importer refuses is a 422 naming source.path with the importer's one line.
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { MAX_VOCAB } from '../contract/corpus-files.ts'
import { unprocessable } from '../errors.ts'
import { parseManifest } from '../models/manifest.ts'
import type { LoadedModel } from '../models/registry.ts'
import { loadTokenizer } from '../tokenizer/tokenizer.ts'
import { containedPath } from './contained-path.ts'
import { TRAINER_DIR } from './trainer-process.ts'

const PARAM = 'source.path'
const IMPORT_ERROR = 't2r import: error: '

/** What a conversion needs of its source: the folder the trainer reads, and what tokenizes its corpus. */
export type ConversionSource = Pick<LoadedModel, 'name' | 'dir' | 'manifest' | 'tokenizer'>

export async function hfFolder (importsDir: string | null, relative: string): Promise<string> {
  if (importsDir === null) throw unprocessable('source type hf needs the server started with --imports-dir (T2R_IMPORTS_DIR)', PARAM)
  const real = await containedPath(importsDir, relative, PARAM, 'the imports folder')
  if (!(await stat(real)).isDirectory()) throw unprocessable(`${PARAM} ${relative} is not a folder`, PARAM)
  return real
}

/** The imported teacher's model.json name (what the converted model names as its teacher): the
 * checkpoint folder's name, made a valid model name. */
function modelName (hfDir: string): string {
  const name = basename(hfDir).replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 60)
  return /^[A-Za-z0-9]/.test(name) ? name : `hf-${name}`.slice(0, 64)
}

/** Runs `t2r import --hf hfDir --out out` (a subprocess: the event loop keeps serving). */
async function runImport (python: string, hfDir: string, out: string, threads: number): Promise<{ code: number | null, stderr: string }> {
  const child = spawn(python, ['-m', 't2r', 'import', '--hf', hfDir, '--out', out, '--name', modelName(hfDir), '--threads', String(threads)], {
    cwd: TRAINER_DIR,
    env: { ...process.env, PYTHONPATH: TRAINER_DIR, PYTHONUNBUFFERED: '1' },
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-8192) })
  return await new Promise((resolve) => {
    child.on('error', (err) => { stderr += `failed to start ${python}: ${err.message}` })
    child.on('close', (code) => { resolve({ code, stderr }) })
  })
}

/** Imports the checkpoint `relative` (under importsDir) into `out`; -> the source it makes. */
export async function importHfSource (importsDir: string | null, relative: string, out: string, python: string, threads: number): Promise<ConversionSource> {
  const hfDir = await hfFolder(importsDir, relative)
  const { code, stderr } = await runImport(python, hfDir, out, threads)
  const line = stderr.trim().split('\n').at(-1) ?? ''
  if (code === 1 && line.startsWith(IMPORT_ERROR)) {
    throw unprocessable(`${PARAM} ${relative}: ${line.slice(IMPORT_ERROR.length).replaceAll(hfDir, relative)}`, PARAM)
  }
  if (code !== 0) throw new Error(`importing ${relative} failed (exit ${code}): ${stderr.trim().split('\n').slice(-4).join(' | ')}`)
  const manifest = parseManifest(JSON.parse(readFileSync(join(out, 'model.json'), 'utf8')), out)
  if (manifest.vocab_size > MAX_VOCAB) {
    throw unprocessable(`${PARAM} ${relative}: a vocabulary of ${manifest.vocab_size} tokens does not fit conversion corpora (token ids are 16-bit, at most ${MAX_VOCAB})`, PARAM)
  }
  const tokenizerPath = join(out, 'tokenizer.json')
  // SOTU splits are cached per tokenizer (and EOS id), whatever the checkpoint is called.
  const key = createHash('sha256').update(readFileSync(tokenizerPath)).update(String(manifest.eos_token_id)).digest('hex').slice(0, 16)
  return { name: `hf-${key}`, dir: out, manifest, tokenizer: loadTokenizer(tokenizerPath) }
}
