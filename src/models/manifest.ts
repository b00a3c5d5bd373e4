// model.json, validated against the contract's schema (contract/manifest.schema.json) at load, its
// state tensors against the contract's ONNX graph (contract/onnx-io.json); see docs/design.md §7.
import { isDeepStrictEqual } from 'node:util'
import { expectedState } from '../contract/onnx-io.ts'
import type { Manifest, StateTensorSpec } from '../contract/schemas.ts'
import { manifestContract } from '../contract/validate.ts'

export type { Manifest, StateTensorSpec }

export function parseManifest (json: unknown, where: string): Manifest {
  const first = manifestContract.violations(json)[0]
  if (first !== undefined) throw new Error(`${where}: invalid model.json at ${first.path}: ${first.message}`)
  const m = json as Manifest
  const expected = expectedState(m)
  for (const [i, want] of expected.entries()) {
    const got = m.state[i]
    if (!isDeepStrictEqual(got, want)) {
      throw new Error(`${where}: state ${i} is ${JSON.stringify(got)}; a ${m.architecture} model's is ${JSON.stringify(want)} (contract/onnx-io.json)`)
    }
  }
  if (m.state.length !== expected.length) throw new Error(`${where}: ${m.state.length} state tensors; a ${m.architecture} model has ${expected.length}`)
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

export function stateElements (spec: StateTensorSpec, past: number, batch = 1): number {
  return stateShape(spec, past, batch).reduce((a, b) => a * b, 1)
}
