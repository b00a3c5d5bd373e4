// model.json, validated against a JSON Schema at load (DESIGN.md §2).
import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'

const Dim = Type.Union([Type.Integer({ minimum: 1 }), Type.String()])

export const StateTensorSchema = Type.Object({
  name: Type.String({ minLength: 1 }),
  output: Type.String({ minLength: 1 }),
  shape: Type.Array(Dim, { minItems: 1 }),
  dtype: Type.Literal('float32'),
  growing_axis: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()])
})

export const ManifestSchema = Type.Object({
  name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' }),
  architecture: Type.Union([Type.Literal('t2r'), Type.Literal('softmax'), Type.Literal('elu')]),
  vocab_size: Type.Integer({ minimum: 2 }),
  layers: Type.Integer({ minimum: 1 }),
  heads: Type.Integer({ minimum: 1 }),
  head_dim: Type.Integer({ minimum: 1 }),
  feature_dim: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()]),
  max_positions: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()]),
  eos_token_id: Type.Integer({ minimum: 0 }),
  // Special tokens of models imported from Hugging Face checkpoints (see special-tokens.ts): every
  // end-of-sequence id (the first one is eos_token_id), the begin-of-sequence id, and whether
  // prompts start with it. Absent, they come from generation_config.json / tokenizer_config.json.
  eos_token_ids: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 })),
  bos_token_id: Type.Optional(Type.Union([Type.Integer({ minimum: 0 }), Type.Null()])),
  add_bos_token: Type.Optional(Type.Boolean()),
  state: Type.Array(StateTensorSchema, { minItems: 1 }),
  teacher: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  training: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  metrics: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  generation_defaults: Type.Optional(Type.Object({
    max_new_tokens: Type.Optional(Type.Integer({ minimum: 1 })),
    temperature: Type.Optional(Type.Number({ minimum: 0 })),
    top_p: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
    top_k: Type.Optional(Type.Integer({ minimum: 0 })),
    repetition_penalty: Type.Optional(Type.Number({ exclusiveMinimum: 0 }))
  }))
})

export type Manifest = Static<typeof ManifestSchema>
export type StateTensorSpec = Static<typeof StateTensorSchema>

export function parseManifest (json: unknown, where: string): Manifest {
  if (!Value.Check(ManifestSchema, json)) {
    const first = Value.Errors(ManifestSchema, json).First()
    throw new Error(`${where}: invalid model.json at ${first?.path || '/'}: ${first?.message ?? 'invalid'}`)
  }
  const m = json
  const recurrent = m.architecture !== 'softmax'
  for (const s of m.state) {
    if (!s.shape.includes('batch')) throw new Error(`${where}: state ${s.name} has no batch axis`)
    if (recurrent && s.growing_axis !== null) throw new Error(`${where}: recurrent state ${s.name} cannot grow`)
    if (!recurrent && s.growing_axis === null) throw new Error(`${where}: KV cache ${s.name} needs a growing_axis`)
  }
  for (const [field, id] of [['eos_token_id', m.eos_token_id], ...(m.eos_token_ids ?? []).map((id) => ['eos_token_ids', id] as const), ['bos_token_id', m.bos_token_id ?? null]] as const) {
    if (id !== null && id >= m.vocab_size) throw new Error(`${where}: ${field} ${id} outside vocab_size ${m.vocab_size}`)
  }
  if (m.eos_token_ids !== undefined && m.eos_token_ids[0] !== m.eos_token_id) {
    throw new Error(`${where}: eos_token_ids must start with eos_token_id (${m.eos_token_id}), got ${m.eos_token_ids[0]}`)
  }
  return m
}

/** Concrete shape of one sequence's state tensor (batch 1) after `past` tokens. */
export function stateShape (spec: StateTensorSpec, past: number, batch = 1): number[] {
  return spec.shape.map((d, axis) => {
    if (d === 'batch') return batch
    if (axis === spec.growing_axis) return past
    if (typeof d === 'string') throw new Error(`state ${spec.name}: unknown symbolic axis ${d}`)
    return d
  })
}

export function stateElements (spec: StateTensorSpec, past: number): number {
  return stateShape(spec, past).reduce((a, b) => a * b, 1)
}
