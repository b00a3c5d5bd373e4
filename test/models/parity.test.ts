import { join } from 'node:path'
import t from 'tap'
import { checkParity, parityFailure, PARITY_TOLERANCE } from '../../src/models/parity.ts'
import { SHIPPED, tinyModelsDir } from '../helpers/fixtures.ts'

for (const [label, dir] of [
  ['shipped sotu-t2r', join(SHIPPED, 'sotu-t2r')],
  ['shipped sotu-base (KV cache)', join(SHIPPED, 'sotu-base')],
  ['tiny t2r', join(tinyModelsDir(), 'tiny-t2r')]
] as const) {
  t.test(`${label}: onnxruntime-node matches PyTorch in one call and token by token (decode.onnx)`, async (t) => {
    const r = await checkParity(dir)
    t.ok(r.decodeGraph, 'token by token ran through the decode graph (decode.onnx) the engine decodes with')
    t.ok(r.fullMaxDiff <= PARITY_TOLERANCE, `one call: max |Δlogit| ${r.fullMaxDiff}`)
    t.ok(r.stepwiseMaxDiff <= PARITY_TOLERANCE, `token by token: max |Δlogit| ${r.stepwiseMaxDiff}`)
    if (r.stateMaxDiff !== null) {
      t.ok(r.stateMaxDiff <= PARITY_TOLERANCE, `state, one call vs token by token: ${r.stateMaxDiff}`)
      t.ok((r.referenceStateMaxDiff ?? Infinity) <= PARITY_TOLERANCE, `state vs PyTorch: ${r.referenceStateMaxDiff}`)
    }
    t.equal(parityFailure(r), null)
  })
}
