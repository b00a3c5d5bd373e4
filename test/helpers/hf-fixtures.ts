// A model folder as an import of a Hugging Face Llama-style chat checkpoint would write it, built
// once per checkout under test/.fixtures: the SentencePiece-style tokenizer of sp-tokenizer.ts, a
// tiny T2R model the real trainer pretrains and converts on SOTU text tokenized with it (each address
// between <s> and </s>), and the checkpoint's tokenizer_config.json (ChatML chat template, BOS added)
// and generation_config.json (two EOS ids: </s> and <|im_end|>).
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { addressesOf } from '../../src/corpus/sotu.ts'
import { FIXTURES, ROOT, t2r } from './fixtures.ts'
import { trainSentencePieceBpe } from './sp-tokenizer.ts'

export const CHAT_MODEL = 'tiny-chat'
export const SP_VOCAB = 2048

/** ChatML, opened with the BOS token as Llama-based ChatML finetunes do. */
export const CHATML_TEMPLATE = "{{ bos_token }}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

function writeJson (path: string, json: unknown): void {
  writeFileSync(path, JSON.stringify(json, null, 2) + '\n')
}

/** The checkpoint's own files, as an import copies them, and the manifest fields it writes. */
function addCheckpointFiles (folder: string): void {
  const vocab = (JSON.parse(readFileSync(join(folder, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } }).model.vocab
  const [bos, eos, imEnd] = [vocab['<s>'], vocab['</s>'], vocab['<|im_end|>']]
  writeJson(join(folder, 'tokenizer_config.json'), {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    pad_token: null,
    chat_template: CHATML_TEMPLATE,
    clean_up_tokenization_spaces: false,
    legacy: true,
    model_max_length: 2048,
    tokenizer_class: 'LlamaTokenizer'
  })
  writeJson(join(folder, 'generation_config.json'), { _from_model_config: true, bos_token_id: bos, eos_token_id: [eos, imEnd], transformers_version: '4.44.0' })
  const manifest = JSON.parse(readFileSync(join(folder, 'model.json'), 'utf8')) as Record<string, unknown>
  writeJson(join(folder, 'model.json'), { ...manifest, eos_token_id: eos, eos_token_ids: [eos, imEnd], bos_token_id: bos, add_bos_token: true })
}

/** A models folder holding tiny-chat. */
export function hfModelsDir (): string {
  const dir = join(FIXTURES, 'hf-models')
  if (existsSync(join(dir, CHAT_MODEL, 'model.json'))) return dir
  const work = join(FIXTURES, `hf-build-${process.pid}`)
  rmSync(work, { recursive: true, force: true })
  mkdirSync(work, { recursive: true })
  const tokenizer = join(work, 'tokenizer.json')
  writeFileSync(tokenizer, JSON.stringify(trainSentencePieceBpe(addressesOf('train').map((a) => a.text), SP_VOCAB)))
  const data = join(work, 'data')
  execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'prepare-corpus.ts'), '--out', data, '--tokenizer', tokenizer, '--bos-token', '<s>', '--eos-token', '</s>'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
  const common = ['--data', data, '--batch', '4', '--seq', '32', '--eval-windows', '4', '--threads', '1', '--log-every', '100']
  const teacher = join(work, 'teacher')
  t2r(['pretrain', ...common, '--run', join(work, 'run-base'), '--steps', '150', '--dim', '32', '--layers', '2', '--heads', '2', '--ffn-dim', '64', '--lr', '1e-2', '--warmup', '2', '--out', teacher])
  t2r(['convert', ...common, '--teacher', teacher, '--run', join(work, 'run-t2r'), '--steps', '40', '--feature-dim', '8', '--warmup', '2', '--out', join(work, 'models', CHAT_MODEL)])
  addCheckpointFiles(join(work, 'models', CHAT_MODEL))
  rmSync(dir, { recursive: true, force: true })
  renameSync(join(work, 'models'), dir)
  rmSync(work, { recursive: true, force: true })
  return dir
}

/** The fixture's tokenizer.json. */
export function spTokenizerPath (): string {
  return join(hfModelsDir(), CHAT_MODEL, 'tokenizer.json')
}
