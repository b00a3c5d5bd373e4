// The decode batch's state layout: rows stack and unstack exactly, the stacked state is reused while
// the members stay, and every member gets its own (updated) row back.
import t from 'tap'
import { DecodeBatch, decodeOutputs, extractRow, stackRows, stepFeeds } from '../../src/engine/batch-state.ts'
import type { StateTensorSpec } from '../../src/models/manifest.ts'

const LAYERS = 2
const specs: StateTensorSpec[] = [
  { name: 'state_kv', output: 'state_kv_out', shape: [LAYERS, 'batch', 2, 3], dtype: 'float32', growing_axis: null },
  { name: 'state_k', output: 'state_k_out', shape: [LAYERS, 'batch', 3], dtype: 'float32', growing_axis: null }
]
const row = (seed: number, n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => seed * 1000 + i)

t.test('stacking interleaves rows per layer and extracting gives each row back', async (t) => {
  const rows = [row(1, LAYERS * 6), row(2, LAYERS * 6), row(3, LAYERS * 6)]
  const stacked = stackRows(rows, LAYERS)
  // Layer 0 holds rows 0,1,2's first halves, then layer 1 their second halves.
  t.same([...stacked.subarray(0, 6)], [...rows[0].subarray(0, 6)])
  t.same([...stacked.subarray(6, 12)], [...rows[1].subarray(0, 6)])
  t.same([...stacked.subarray(18, 24)], [...rows[0].subarray(6, 12)])
  rows.forEach((r, i) => { t.same([...extractRow(stacked, LAYERS, 3, i)], [...r], `row ${i}`) })
})

t.test('feeds: ids [B, T], one position per row, state shapes with the batch filled in', async (t) => {
  const f = stepFeeds(specs, [[5], [7]], [3, 9], [new Float32Array(2 * 2 * 6), new Float32Array(2 * 2 * 3)])
  t.same(f.input_ids.dims, [2, 1])
  t.same([...f.input_ids.data as BigInt64Array], [5n, 7n])
  t.same([...f.position_offset.data as BigInt64Array], [3n, 9n])
  t.same(f.state_kv.dims, [LAYERS, 2, 2, 3])
  t.same(f.state_k.dims, [LAYERS, 2, 3])
})

t.test('decode graph feeds: each layer of the stacked state is its own input, a view of it', async (t) => {
  const kv = row(1, LAYERS * 2 * 6)
  const f = stepFeeds(specs, [[5], [7]], [3, 9], [kv, new Float32Array(LAYERS * 2 * 3)], LAYERS)
  t.notOk('state_kv' in f, 'no stacked input')
  t.same(f.state_kv_1.dims, [2, 2, 3])
  t.same(f.state_k_0.dims, [2, 3])
  t.equal(f.state_kv_1.data.buffer, kv.buffer, 'a view: no copy')
  t.same([...f.state_kv_1.data], [...kv.subarray(12, 24)], 'layer 1 is the second half of the stacked [L, B, ...] array')
})

t.test('decode graph outputs: each layer\'s buffer is a view of one new stacked array per state tensor', async (t) => {
  const { state, buffers } = decodeOutputs(specs, LAYERS, 3, 2)
  t.same(state.map((s) => s.length), [LAYERS * 2 * 6, LAYERS * 2 * 3])
  t.same(Object.keys(buffers).sort(), ['state_k_out_0', 'state_k_out_1', 'state_kv_out_0', 'state_kv_out_1'])
  const layer1 = buffers.state_kv_out_1.data as Float32Array
  layer1.fill(4)
  t.same([...state[0].subarray(0, 12)], new Array(12).fill(0))
  t.same([...state[0].subarray(12)], new Array(12).fill(4), 'what the graph writes for layer 1 lands in the stacked layer 1')
  const kv: StateTensorSpec = { name: 'past_key', output: 'present_key', shape: [LAYERS, 'batch', 2, 'past', 3], dtype: 'float32', growing_axis: 3 }
  t.same(decodeOutputs([kv], LAYERS, 5, 1).buffers.present_key_0.dims, [1, 2, 6, 3], 'a KV cache comes back one position longer')
})

t.test('double buffering: a steady batch offers the state its last step consumed, never the live one', async (t) => {
  const a = { state: [row(1, 12), row(1, 6)] as Float32Array[] | null }
  const b = { state: [row(2, 12), row(2, 6)] as Float32Array[] | null }
  const batch = new DecodeBatch<typeof a>(specs, LAYERS)
  const first = batch.stateFor([a, b])
  t.equal(batch.takeSpare(), null, 'a new batch has nothing to offer')
  const second = first.map((d) => d.map((x) => x + 1))
  batch.update(second)
  t.equal(batch.stateFor([a, b]), second)
  t.equal(batch.takeSpare(), first, 'the consumed state')
  t.equal(batch.takeSpare(), null, 'offered once')
  batch.update(first.map((d) => d.map((x) => x + 2)))
  batch.stateFor([b, a])
  t.equal(batch.takeSpare(), null, 'members changed: restacked, no spare')
  const { state } = decodeOutputs(specs, LAYERS, 0, 2, second)
  t.equal(state[0], second[0], 'decode outputs are written into a spare of the right size')
  t.not(decodeOutputs(specs, LAYERS, 0, 3, second).state[0], second[0], 'not into one of another size')
})

t.test('a decode batch restacks only when its members change, and hands rows back', async (t) => {
  const a = { state: [row(1, 12), row(1, 6)] as Float32Array[] | null }
  const b = { state: [row(2, 12), row(2, 6)] as Float32Array[] | null }
  const c = { state: [row(3, 12), row(3, 6)] as Float32Array[] | null }
  const batch = new DecodeBatch<typeof a>(specs, LAYERS)
  const first = batch.stateFor([a, b])
  t.equal(a.state, null, 'members lend their state to the batch')
  t.equal(batch.stateFor([a, b]), first, 'same members: the same stacked arrays, no copy')
  // A step's output becomes the batch state; rows handed back carry it.
  const next = first.map((d) => d.map((x) => x + 0.5))
  batch.update(next)
  const third = batch.stateFor([a, b, c])
  t.not(third, next, 'new member: restacked')
  t.same([...a.state ?? []].length, 0, 'still lent')
  batch.release()
  t.same([...a.state![0]], [...row(1, 12)].map((x) => x + 0.5), 'a got its updated row back')
  t.same([...b.state![1]], [...row(2, 6)].map((x) => x + 0.5))
  t.same([...c.state![0]], [...row(3, 12)], 'c had no step in the batch: unchanged')
})
