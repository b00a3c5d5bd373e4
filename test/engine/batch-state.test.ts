// The decode batch's state layout: rows stack and unstack exactly, the stacked state is reused while
// the members stay, and every member gets its own (updated) row back.
import t from 'tap'
import { DecodeBatch, extractRow, stackRows, stepFeeds } from '../../src/engine/batch-state.ts'
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
