// The direct ONNX Runtime binding (native/ort_direct.c, built by scripts/setup.sh): the same graphs
// give the same outputs as through onnxruntime-node, an output given a tensor is written into that
// tensor and returned as it (no copy), and bad input is refused with the tensor named.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import ort from 'onnxruntime-node'
import { bindingInUse, createSession, type GraphSession } from '../../src/engine/ort-session.ts'
import { parseManifest, stateShape } from '../../src/models/manifest.ts'
import { layerTensorName } from '../../src/contract/onnx-io.ts'
import { tinyModelsDir } from '../helpers/fixtures.ts'

const runtime = { executionProvider: 'cpu' as const, cudaDevice: 0, intraOpThreads: 1 }

async function withBinding (direct: boolean, path: string): Promise<GraphSession> {
  const before = process.env.T2R_ORT_DIRECT
  process.env.T2R_ORT_DIRECT = direct ? '1' : '0'
  try {
    return await createSession(path, runtime)
  } finally {
    if (before === undefined) delete process.env.T2R_ORT_DIRECT
    else process.env.T2R_ORT_DIRECT = before
  }
}

function maxDiff (a: ort.Tensor, b: ort.Tensor): number {
  const x = a.data as Float32Array
  const y = b.data as Float32Array
  let m = x.length === y.length ? 0 : Infinity
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]))
  return m
}

t.test('setup built the direct binding, and the engine uses it on CPU', async (t) => {
  const b = bindingInUse()
  t.equal(b.binding, 'direct', b.reason)
})

t.test('T2R_ORT_DIRECT takes 0, 1 or nothing', async (t) => {
  const before = process.env.T2R_ORT_DIRECT
  process.env.T2R_ORT_DIRECT = 'yes'
  t.throws(() => bindingInUse(), /T2R_ORT_DIRECT must be 1 .* or unset .*got "yes"/)
  process.env.T2R_ORT_DIRECT = '0'
  t.equal(bindingInUse().binding, 'onnxruntime-node')
  if (before === undefined) delete process.env.T2R_ORT_DIRECT
  else process.env.T2R_ORT_DIRECT = before
})

for (const name of ['tiny-t2r', 'tiny-base']) {
  t.test(`${name}: decode.onnx and model.onnx through both bindings`, async (t) => {
    const dir = join(tinyModelsDir(), name)
    const manifest = parseManifest(JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')), dir)
    const rows = 3
    const past = 5
    // Seeded, not zero: a state or cache that is read must change the logits.
    let seed = 7
    const random = (n: number): Float32Array => Float32Array.from({ length: n }, () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 - 0.5 })
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from([3n, 11n, 7n]), [rows, 1]),
      position_offset: new ort.Tensor('int64', BigInt64Array.from([past, past, past], BigInt), [rows])
    }
    const fetches = (): Record<string, ort.Tensor | null> => {
      const f: Record<string, ort.Tensor | null> = { logits: new ort.Tensor('float32', new Float32Array(rows * manifest.vocab_size), [rows, manifest.vocab_size]) }
      for (const s of manifest.state) {
        const dims = stateShape(s, past + 1, rows).slice(1)
        // A KV cache's output is one slot longer than its input: left for ONNX Runtime to allocate.
        for (let l = 0; l < manifest.layers; l++) f[layerTensorName(s.output, l)] = s.growing_axis === null ? new ort.Tensor('float32', new Float32Array(dims.reduce((a, d) => a * d, 1)), dims) : null
      }
      return f
    }
    for (const s of manifest.state) {
      const dims = stateShape(s, past, rows).slice(1)
      for (let l = 0; l < manifest.layers; l++) feeds[layerTensorName(s.name, l)] = new ort.Tensor('float32', random(dims.reduce((a, d) => a * d, 1)), dims)
    }
    const decodePath = join(dir, 'decode.onnx')
    const direct = await withBinding(true, decodePath)
    const node = await withBinding(false, decodePath)
    const given = fetches()
    const a = await direct.run(feeds, given)
    const b = await node.run(feeds, fetches())
    for (const [k, v] of Object.entries(given)) {
      if (v === null) continue
      t.equal(a[k], v, `${k}: the tensor given is the one returned`)
      t.equal(maxDiff(a[k], b[k]), 0, `${k}: written into the given buffer, equal to onnxruntime-node's`)
    }
    for (const s of manifest.state) {
      if (s.growing_axis === null) continue
      const out = layerTensorName(s.output, 0)
      t.same(a[out].dims, b[out].dims, `${out}: allocated by ONNX Runtime, the shape onnxruntime-node returns`)
      t.equal(maxDiff(a[out], b[out]), 0, `${out}: equal`)
    }
    const all = await direct.run(feeds)
    t.same(Object.keys(all).sort(), [...direct.outputNames].sort(), 'no fetches: every output')
    t.equal(maxDiff(all.logits, b.logits), 0, 'no fetches: the same logits')

    // Bad input is refused with the tensor named, and the session still runs.
    // (ort.Tensor checks its own size: a tensor-like object gets past it to the binding's check.)
    const short = { type: 'int64', data: BigInt64Array.from([3n, 11n]), dims: [rows, 1] } as unknown as ort.Tensor
    t.throws(() => direct.run({ ...feeds, input_ids: short }), /input_ids: 2 elements given for dims of 3/)
    const floats = { type: 'float64', data: new Float64Array(rows), dims: [rows] } as unknown as ort.Tensor
    t.throws(() => direct.run({ ...feeds, position_offset: floats }), /position_offset: a Float32Array, Int32Array or BigInt64Array/)
    t.throws(() => direct.run({ ...feeds, position_offset: new ort.Tensor('float32', new Float32Array(rows), [rows]) }), /expected: \(tensor\(int64\)\)/, 'a float where int64 is wanted: ONNX Runtime says which type')
    t.throws(() => direct.run({ ...feeds, nonsense: feeds.input_ids }), /has no input named nonsense/)
    t.throws(() => direct.run(feeds, { logits: new ort.Tensor('float32', new Float32Array(rows), [rows, 1]) }), /logits/, 'an output buffer of the wrong shape')
    t.equal(maxDiff((await direct.run(feeds, fetches())).logits, b.logits), 0, 'after the refusals, the same logits')

    for (const s of [direct, node]) await s.release()
    t.throws(() => direct.run(feeds), /released/)
    await direct.release()

    // model.onnx: a prompt of 4 tokens per row over the stacked state, every output allocated by
    // ONNX Runtime (copied once into a new buffer, like onnxruntime-node's).
    const prefill: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from({ length: rows * 4 }, (_, i) => BigInt(i + 1)), [rows, 4]),
      position_offset: feeds.position_offset
    }
    for (const s of manifest.state) {
      const dims = stateShape(s, past, rows)
      prefill[s.name] = new ort.Tensor('float32', random(dims.reduce((x, d) => x * d, 1)), dims)
    }
    const p = await withBinding(true, join(dir, 'model.onnx'))
    const q = await withBinding(false, join(dir, 'model.onnx'))
    const pa = await p.run(prefill)
    const pb = await q.run(prefill)
    for (const k of q.outputNames) {
      t.same(pa[k].dims, pb[k].dims, `model.onnx ${k}: same shape`)
      t.equal(maxDiff(pa[k], pb[k]), 0, `model.onnx ${k}: same values`)
    }
    for (const s of [p, q]) await s.release()
  })
}
