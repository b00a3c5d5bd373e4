// The contract's JSON Schemas are what both sides validate against; the TypeScript types come
// from TypeBox mirrors of them. Drift on either side fails here: each mirror must serialize to its
// JSON file, and the shipped model folders must keep to the schemas and to contract/onnx-io.json.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { readContract } from '../../src/contract/files.ts'
import { LOGITS_REFERENCE, ONNX_IO, stateTensorsFor } from '../../src/contract/onnx-io.ts'
import { CorpusMetaSchema, ManifestSchema, ParitySchema, TrainerEventSchema } from '../../src/contract/schemas.ts'
import { manifestContract, parityContract } from '../../src/contract/validate.ts'
import { parseManifest } from '../../src/models/manifest.ts'
import { SHIPPED } from '../helpers/fixtures.ts'

const ANNOTATIONS = new Set(['$schema', '$id', '$comment', 'title', 'description'])

/** A schema as plain JSON without annotations (documentation, not constraints). */
function constraints (schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(constraints)
  if (schema === null || typeof schema !== 'object') return schema
  return Object.fromEntries(Object.entries(schema).filter(([k]) => !ANNOTATIONS.has(k)).map(([k, v]) => [k, k === 'properties' ? Object.fromEntries(Object.entries(v as object).map(([p, s]) => [p, constraints(s)])) : constraints(v)]))
}

for (const [file, mirror] of [
  ['manifest.schema.json', ManifestSchema],
  ['parity.schema.json', ParitySchema],
  ['corpus-meta.schema.json', CorpusMetaSchema],
  ['trainer-events.schema.json', TrainerEventSchema]
] as const) {
  t.test(`src/contract/schemas.ts mirrors contract/${file}`, async (t) => {
    t.same(constraints(JSON.parse(JSON.stringify(mirror))), constraints(readContract(file)))
  })
}

for (const model of ['sotu-base', 'sotu-t2r']) {
  t.test(`shipped ${model} keeps to the contract`, async (t) => {
    const manifest = JSON.parse(readFileSync(join(SHIPPED, model, 'model.json'), 'utf8')) as unknown
    t.same(manifestContract.violations(manifest), [], 'model.json validates')
    const m = parseManifest(manifest, model)
    t.same(m.state.map((s) => s.name), stateTensorsFor(m.architecture).map((s) => s.name), 'its state tensors are the contract\'s')
    const parity = JSON.parse(readFileSync(join(SHIPPED, model, 'parity.json'), 'utf8')) as Record<string, unknown>
    t.same(parityContract.violations(parity), [], 'parity.json validates')
    const references = stateTensorsFor(m.architecture).flatMap((s) => (s.reference === null ? [] : [s.reference]))
    t.same(Object.keys(parity).sort(), ['input_ids', 'vocab_size', LOGITS_REFERENCE, ...references].sort(), 'parity.json holds the references onnx-io.json names')
  })
}

t.test('parity.schema.json has a key for every reference onnx-io.json names', async (t) => {
  const schema = readContract('parity.schema.json') as { required: string[], properties: Record<string, unknown> }
  t.ok(schema.required.includes(LOGITS_REFERENCE), `${LOGITS_REFERENCE} is required`)
  for (const family of Object.values(ONNX_IO.state)) {
    for (const tensor of family.tensors) {
      if (tensor.reference !== null) t.ok(tensor.reference in schema.properties, `${tensor.reference} is allowed`)
    }
  }
})

t.test('a model.json off the contract is refused naming the field', async (t) => {
  const manifest = JSON.parse(readFileSync(join(SHIPPED, 'sotu-t2r', 'model.json'), 'utf8')) as Record<string, unknown>
  t.throws(() => parseManifest({ ...manifest, architecture: 'lstm' }, 'x'), /x: invalid model\.json at \/architecture/)
  t.throws(() => parseManifest({ ...manifest, surprise: 1 }, 'x'), /invalid model\.json at \/surprise: must NOT have additional properties/)
  const state = manifest.state as Array<Record<string, unknown>>
  t.throws(() => parseManifest({ ...manifest, state: [{ ...state[0], name: 'kv' }, state[1]] }, 'x'), /state 0 is .*"kv".*contract\/onnx-io\.json/)
})
