// The engine's state layout: rows stack and unstack exactly (prefill batches), and a decode batch's
// slots are read and written in place while members join and leave, each keeping its own state.
import t from 'tap'
import { DecodeBatch, decodeOutputs, extractRow, isSharedZeros, PaddedCacheBatch, sharedZeros, stackRows, stackRowsInto, stepFeeds } from '../../src/engine/batch-state.ts'
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

t.test('stacking into a reused array: each row copied, the shared zero state written as zeros over what was there', async (t) => {
  const rows = [row(1, LAYERS * 6), sharedZeros(LAYERS * 6), row(3, LAYERS * 6)]
  const into = new Float32Array(LAYERS * 3 * 6).fill(-7)
  t.equal(stackRowsInto(rows, LAYERS, into), into)
  t.same([...into], [...stackRows(rows, LAYERS)], 'what stackRows gives')
  t.same([...extractRow(into, LAYERS, 3, 1)], new Array(LAYERS * 6).fill(0), 'no -7 left in the zero row')
  t.equal(sharedZeros(LAYERS * 6), rows[1], 'one shared array per size')
  t.ok(isSharedZeros(rows[1]) && !isSharedZeros(new Float32Array(LAYERS * 6)), 'only the shared array is the shared zero state')
  t.same([...rows[1]], new Array(LAYERS * 6).fill(0), 'and it is still zeros')
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

/** A step as the decode graph does it: reads each layer's rows from front, writes f(x) into back. */
function step (batch: DecodeBatch<{ state: Float32Array[] | null }>, f: (x: number) => number): void {
  specs.forEach((_, i) => {
    for (let l = 0; l < LAYERS; l++) {
      const input = batch.layerRows('front', i, l)
      batch.layerRows('back', i, l).set(input.map(f))
    }
  })
  batch.swap()
}

t.test('decode slots: members lend their rows; steps read and write in place; every member gets its updated row back', async (t) => {
  const a = { state: [row(1, 12), row(1, 6)] as Float32Array[] | null }
  const b = { state: [row(2, 12), row(2, 6)] as Float32Array[] | null }
  const batch = new DecodeBatch<typeof a>(specs, LAYERS)
  t.same(batch.arrange([a, b]), [a, b])
  t.equal(a.state, null, 'members lend their state to the batch')
  const layer1 = batch.layerRows('front', 0, 1)
  t.same([...layer1], [...row(1, 12).subarray(6), ...row(2, 12).subarray(6)], 'layer 1: each member\'s second half, in row order')
  t.equal(layer1.length, 12, 'a view of the members\' rows only')
  step(batch, (x) => x + 0.5)
  const front = batch.layerRows('front', 0, 0)
  step(batch, (x) => x + 0.5)
  t.not(batch.layerRows('front', 0, 0).buffer, front.buffer, 'double buffered: the step wrote the other array')
  step(batch, (x) => x + 0.5)
  t.equal(batch.layerRows('front', 0, 0).buffer, front.buffer, 'and they alternate: nothing is allocated per step')
  batch.release()
  t.equal(batch.size, 0)
  t.same([...a.state![0]], [...row(1, 12)].map((x) => x + 1.5), 'a got its updated rows back')
  t.same([...b.state![1]], [...row(2, 6)].map((x) => x + 1.5))
})

t.test('decode slots: joining and leaving move single rows; the others keep their state', async (t) => {
  const seqs = [1, 2, 3, 4, 5, 6].map((n) => ({ n, state: [row(n, 12), row(n, 6)] as Float32Array[] | null }))
  const [a, b, c, d, e, f] = seqs
  const batch = new DecodeBatch<typeof a>(specs, LAYERS)
  batch.arrange([a, b, c])
  step(batch, (x) => x + 1)
  // c leaves (paused, or another set rotates in), d and e join: rows of others are untouched.
  const rows = batch.arrange([a, b, d, e])
  t.same(rows.map((s) => s.n).sort(), [1, 2, 4, 5])
  t.same([...c.state![0]], [...row(3, 12)].map((x) => x + 1), 'c left with its updated rows')
  step(batch, (x) => x + 1)
  // The batch outgrows its first capacity (4): rows are kept across the growth.
  batch.arrange([a, b, d, e, f])
  step(batch, (x) => x + 1)
  batch.evict(a)
  t.same([...a.state![1]], [...row(1, 6)].map((x) => x + 3), 'a: three steps')
  t.equal(batch.size, 4)
  batch.release()
  t.same([...b.state![0]], [...row(2, 12)].map((x) => x + 3), 'b: three steps, though rows moved around it')
  t.same([...d.state![0]], [...row(4, 12)].map((x) => x + 2), 'd: joined for two')
  t.same([...e.state![1]], [...row(5, 6)].map((x) => x + 2))
  t.same([...f.state![0]], [...row(6, 12)].map((x) => x + 1), 'f: joined for one')
})

t.test('decode slots: a stacked copy for a graph without per-layer state, and back', async (t) => {
  const a = { state: [row(1, 12), row(1, 6)] as Float32Array[] | null }
  const b = { state: [row(2, 12), row(2, 6)] as Float32Array[] | null }
  const batch = new DecodeBatch<typeof a>(specs, LAYERS)
  batch.arrange([a, b])
  const stacked = batch.stacked()
  t.same([...stacked[0]], [...stackRows([row(1, 12), row(2, 12)], LAYERS)], 'the [L, B, ...] layout')
  batch.load(stacked.map((s) => s.map((x) => -x)))
  batch.release()
  t.same([...a.state![0]], [...row(1, 12)].map((x) => -x))
  t.same([...b.state![1]], [...row(2, 6)].map((x) => -x))
})

t.test('decode slots hold constant-size state only', async (t) => {
  const kv: StateTensorSpec = { name: 'past_key', output: 'present_key', shape: [LAYERS, 'batch', 2, 'past', 3], dtype: 'float32', growing_axis: 3 }
  t.throws(() => new DecodeBatch([kv], LAYERS), /constant-size/)
})

// A KV cache [L, B, heads 2, past, head_dim 3]: its own cache is `position` slots long.
const cacheSpecs: StateTensorSpec[] = [
  { name: 'past_key', output: 'present_key', shape: [LAYERS, 'batch', 2, 'past', 3], dtype: 'float32', growing_axis: 3 },
  { name: 'past_value', output: 'present_value', shape: [LAYERS, 'batch', 2, 'past', 3], dtype: 'float32', growing_axis: 3 }
]
const cacheOwner = (seed: number, position: number): { state: Float32Array[] | null, position: number } =>
  ({ position, state: [row(seed, LAYERS * 2 * position * 3), row(seed + 50, LAYERS * 2 * position * 3)] })

t.test('padded caches: members of different lengths right-aligned in one past axis, each getting its own cache back', async (t) => {
  const batch = new PaddedCacheBatch(cacheSpecs, LAYERS)
  const a = cacheOwner(1, 4)
  const b = cacheOwner(2, 2)
  const mine = [a.state!, b.state!]
  t.same(batch.arrange([a, b]), [a, b])
  t.equal(a.state, null, 'the batch holds the caches')
  const f = batch.feeds()
  t.same(f.past_key_0.dims, [2, 2, 4, 3], 'past is the longest member\'s length')
  const k0 = f.past_key_0.data as Float32Array
  // Row 1 (b, 2 slots) in head 0: two slots of padding (zeros), then b's two slots of layer 0 head 0.
  t.same([...k0.subarray(24, 30)], [0, 0, 0, 0, 0, 0])
  t.same([...k0.subarray(30, 36)], [...mine[1][0].subarray(0, 6)])
  t.same([...k0.subarray(0, 12)], [...mine[0][0].subarray(0, 12)], 'row 0 (a, 4 slots) fills its row')
  // A step: its outputs (one slot longer) become the caches; each member leaves with its real slots.
  const outputs = cacheSpecs.map((_, i) => Array.from({ length: LAYERS }, (_, l) => row(10 + i * 10 + l, 2 * 2 * 5 * 3)))
  batch.advance(outputs)
  a.position = 5
  b.position = 3
  batch.evict(b)
  // b: row 1, the last 3 of 5 slots of each head (head 0 at 30 + 2 * 3, head 1 at 45 + 2 * 3).
  t.same([...b.state![0].subarray(0, 18)], [...outputs[0][0].subarray(36, 45), ...outputs[0][0].subarray(51, 60)], 'b: its 3 real slots of layer 0')
  t.same([...b.state![1].subarray(18, 36)], [...outputs[1][1].subarray(36, 45), ...outputs[1][1].subarray(51, 60)], 'b: layer 1 of the second tensor')
  batch.evict(a)
  t.same([...a.state![0].subarray(0, 30)], [...outputs[0][0].subarray(0, 30)], 'a: row 0 of the step\'s output, all 5 slots')
  t.same([...a.state![1].subarray(30, 60)], [...outputs[1][1].subarray(0, 30)], 'a: layer 1 of the second tensor')
  t.equal(batch.size, 0)
})

t.test('padded caches: a membership change re-pads to the longest remaining member', async (t) => {
  const batch = new PaddedCacheBatch(cacheSpecs, LAYERS)
  const long = cacheOwner(1, 6)
  const short = cacheOwner(2, 2)
  const mid = cacheOwner(3, 3)
  const want = mid.state!
  batch.arrange([long, short])
  t.same(batch.feeds().past_value_1.dims, [2, 2, 6, 3])
  batch.arrange([short, mid])
  t.equal(long.state?.[0].length, LAYERS * 2 * 6 * 3, 'the long one left with its whole cache')
  const f = batch.feeds()
  t.same(f.past_key_0.dims, [2, 2, 3, 3], 'past shrinks to the longest member (3)')
  const v1 = f.past_value_1.data as Float32Array
  // Row 1 is mid (3 slots, no padding): its layer-1 value cache, both heads.
  t.same([...v1.subarray(18, 36)], [...want[1].subarray(18, 36)])
})

t.test('padded caches: steps write into spare arrays that swap with the ones they read, nothing allocated once they are large enough', async (t) => {
  const batch = new PaddedCacheBatch(cacheSpecs, LAYERS)
  const a = cacheOwner(1, 4)
  const b = cacheOwner(2, 2)
  batch.arrange([a, b])
  const steps: Array<{ arrays: Float32Array[][] }> = []
  for (let s = 0; s < 3; s++) {
    const out = batch.outputs()
    t.same(out.feeds.present_value_1.dims, [2, 2, 5 + s, 3], `step ${s + 1}: outputs one slot longer than the caches`)
    // What a step writes: known values in every output.
    out.arrays.forEach((perLayer, i) => perLayer.forEach((arr, l) => arr.set(row(100 + 10 * s + 3 * i + l, arr.length))))
    batch.advance(out.arrays)
    t.equal(batch.feeds().past_key_0.data, out.arrays[0][0], `step ${s + 1}: the views written are the caches now`)
    steps.push(out)
  }
  t.equal(steps[2].arrays[0][0].buffer, steps[0].arrays[0][0].buffer, 'step 3 wrote into the arrays step 1 wrote (step 2 read them)')
  t.not(steps[1].arrays[0][0].buffer, steps[0].arrays[0][0].buffer, 'steps 1 and 2: two sets')
  a.position = 7
  b.position = 5
  batch.evict(b)
  const last = steps[2].arrays
  // b: row 1 of the last outputs (past 7), its 5 real slots per head: head 0 at 42 + 2 * 3, head 1 at 63 + 2 * 3.
  t.same([...b.state![0].subarray(0, 30)], [...last[0][0].subarray(48, 63), ...last[0][0].subarray(69, 84)], 'b leaves with its slots of the last step')
  batch.evict(a)
  t.same([...a.state![1].subarray(42, 84)], [...last[1][1].subarray(0, 42)], 'a: layer 1 of the second tensor')
})

t.test('decode slots: a prefilled row joins from the stacked output straight into a slot; one leaving without its state leaves the others\' rows intact', async (t) => {
  const a = { state: [row(1, 12), row(1, 6)] as Float32Array[] | null }
  const batch = new DecodeBatch<typeof a>(specs, LAYERS)
  batch.arrange([a])
  // A prefill of three rows, stacked [L, 3, ...]: rows 0 and 2 are done and join.
  const prefilled = [stackRows([row(4, 12), row(5, 12), row(6, 12)], LAYERS), stackRows([row(4, 6), row(5, 6), row(6, 6)], LAYERS)]
  const d = { state: [new Float32Array(0)] as Float32Array[] | null }
  const f = { state: [new Float32Array(0)] as Float32Array[] | null }
  batch.admit(d, prefilled, 0, 3)
  batch.admit(f, prefilled, 2, 3)
  t.equal(d.state, null, 'an admitted sequence holds no state of its own')
  t.same(batch.arrange([a, d, f]), [a, d, f], 'already members: arrange moves nothing')
  step(batch, (x) => x + 1)
  batch.evict(d, false)
  t.same(d.state, [], 'left without a copy of its rows')
  batch.evict(a)
  batch.evict(f)
  t.same([...a.state![0]], [...row(1, 12)].map((x) => x + 1), 'a: its rows, one step on')
  t.same([...f.state![0]], [...row(6, 12)].map((x) => x + 1), 'f: row 2 of the prefill, one step on, though d left from before it')
  t.same([...f.state![1]], [...row(6, 6)].map((x) => x + 1))
})
