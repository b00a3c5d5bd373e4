// Special tokens of a model folder: the manifest first, then generation_config.json and
// tokenizer_config.json, then tokenizer.json (src/models/special-tokens.ts); bad files are refused
// naming the file and the field.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { readGenerationConfig, readTokenizerConfig } from '../../src/models/hf-config.ts'
import { parseManifest, type Manifest } from '../../src/models/manifest.ts'
import { resolveSpecialTokens } from '../../src/models/special-tokens.ts'
import { loadTokenizer } from '../../src/tokenizer/tokenizer.ts'
import { SHIPPED } from '../helpers/fixtures.ts'
import { CHAT_MODEL, hfModelsDir, spTokenizerPath } from '../helpers/hf-fixtures.ts'

const spTokenizer = loadTokenizer(spTokenizerPath())
const shippedManifest = JSON.parse(readFileSync(join(SHIPPED, 'sotu-t2r', 'model.json'), 'utf8')) as Manifest
/** The chat fixture's manifest without the fields an import adds: what the HF files alone say. */
const plainManifest: Manifest = (() => {
  const { eos_token_ids: _ids, bos_token_id: _bos, add_bos_token: _add, ...rest } = JSON.parse(readFileSync(join(hfModelsDir(), CHAT_MODEL, 'model.json'), 'utf8')) as Manifest
  return rest
})()

function folder (files: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'hf-config-'))
  for (const [name, json] of Object.entries(files)) writeFileSync(join(dir, name), typeof json === 'string' ? json : JSON.stringify(json))
  return dir
}
function resolve (manifest: Manifest, files: Record<string, unknown>) {
  const dir = folder(files)
  return resolveSpecialTokens(manifest, spTokenizer, readTokenizerConfig(dir, 'models/x'), readGenerationConfig(dir, 'models/x'), 'models/x')
}

t.test('the shipped models: one EOS, no BOS, as before', async (t) => {
  const tok = loadTokenizer(join(SHIPPED, 'sotu-t2r', 'tokenizer.json'))
  const special = resolveSpecialTokens(shippedManifest, tok, null, null, 'models/sotu-t2r')
  t.same(special, { eosIds: [8191], bosId: null, addBos: false, templateStrings: { eos_token: '<|endoftext|>' } })
})

t.test('the chat fixture: two EOS ids, BOS added, the strings its template gets', async (t) => {
  const dir = join(hfModelsDir(), CHAT_MODEL)
  const manifest = parseManifest(JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')), 'models/tiny-chat')
  const special = resolveSpecialTokens(manifest, spTokenizer, readTokenizerConfig(dir, 'x'), readGenerationConfig(dir, 'x'), 'x')
  t.same(special, { eosIds: [2, spTokenizer.tokenId('<|im_end|>')], bosId: 1, addBos: true, templateStrings: { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' } })
})

t.test('without the manifest fields, the Hugging Face files say the same', async (t) => {
  const imEnd = spTokenizer.tokenId('<|im_end|>')!
  t.same(resolve(plainManifest, { 'generation_config.json': { bos_token_id: 1, eos_token_id: [2, imEnd] }, 'tokenizer_config.json': { add_bos_token: true } }),
    { eosIds: [2, imEnd], bosId: 1, addBos: true, templateStrings: { bos_token: '<s>', eos_token: '</s>' } })
  t.same(resolve(plainManifest, { 'generation_config.json': { eos_token_id: imEnd } }).eosIds, [2, imEnd], 'an int is one more EOS id')
  t.same(resolve(plainManifest, { 'tokenizer_config.json': { eos_token: { __type: 'AddedToken', content: '<|im_end|>' }, bos_token: '<s>' } }),
    { eosIds: [2, imEnd], bosId: 1, addBos: true, templateStrings: { bos_token: '<s>', eos_token: '<|im_end|>' } }, 'AddedToken objects; BOS added because the post-processor adds it')
  t.equal(resolve(plainManifest, { 'tokenizer_config.json': { add_bos_token: false } }).addBos, false, 'the config overrides the post-processor')
  t.equal(resolve({ ...plainManifest, add_bos_token: false }, { 'tokenizer_config.json': { add_bos_token: true } }).addBos, false, 'the manifest overrides the config')
  t.same(resolve({ ...plainManifest, eos_token_ids: [2] }, { 'generation_config.json': { eos_token_id: [2, imEnd] } }).eosIds, [2], 'the manifest\'s list is the list')
})

t.test('chat_template: a string, or the "default" of a named list', async (t) => {
  t.equal(readTokenizerConfig(folder({ 'tokenizer_config.json': { chat_template: 'A' } }), 'x')?.chatTemplate, 'A')
  t.equal(readTokenizerConfig(folder({ 'tokenizer_config.json': { chat_template: [{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D' }] } }), 'x')?.chatTemplate, 'D')
  t.equal(readTokenizerConfig(folder({ 'tokenizer_config.json': {} }), 'x')?.chatTemplate, null)
  t.equal(readTokenizerConfig(folder({}), 'x'), null, 'no file, no config')
})

t.test('bad files and values are refused, naming the file and the field', async (t) => {
  t.throws(() => readTokenizerConfig(folder({ 'tokenizer_config.json': '{ nope' }), 'models/x'), { message: /^models\/x\/tokenizer_config\.json: / })
  t.throws(() => readGenerationConfig(folder({ 'generation_config.json': { eos_token_id: 'two' } }), 'models/x'), { message: /^models\/x\/generation_config\.json: invalid at \/eos_token_id/ })
  t.throws(() => readTokenizerConfig(folder({ 'tokenizer_config.json': { chat_template: 42 } }), 'models/x'), { message: /invalid at \/chat_template/ })
  t.throws(() => resolve(plainManifest, { 'tokenizer_config.json': { eos_token: '<|nope|>' } }), { message: /eos_token "<\|nope\|>" is not a token of tokenizer\.json/ })
  t.throws(() => resolve(plainManifest, { 'generation_config.json': { eos_token_id: [2, 99999] } }), { message: /EOS id 99999 outside the vocabulary/ })
  t.throws(() => resolve({ ...plainManifest, bos_token_id: null, add_bos_token: true }, {}), { message: /no BOS token is named/ })
  t.throws(() => parseManifest({ ...plainManifest, eos_token_ids: [5, 2] }, 'models/x'), { message: /eos_token_ids must start with eos_token_id \(2\)/ })
  t.throws(() => parseManifest({ ...plainManifest, bos_token_id: 5000 }, 'models/x'), { message: /bos_token_id 5000 outside vocab_size/ })
})
