// The layout of recurrent state in the engine, with no ONNX Runtime in it (unit-tested).
//
// A sequence's state is one Float32Array per state tensor, shaped like the tensor with batch 1.
// Every state tensor's axis 0 is the layer and axis 1 the batch ([L, B, ...rest]), so a batch of
// sequences is their rows interleaved per layer (stackRows / extractRow: a multi-sequence prefill).
// Decoding sequences keep their state in a DecodeBatch's slots, read and written in place step
// after step: joining or leaving costs one row's copy.
import { layerTensorName, ONNX_NAMES } from '../contract/onnx-io.ts'
import { stateShape, type StateTensorSpec } from '../models/manifest.ts'

/** Row r of a tensor whose axis 1 is the batch: [L, B, ...rest] -> [L, 1, ...rest]. */
export function extractRow (data: Float32Array, layers: number, batch: number, r: number): Float32Array {
  const row = data.length / (layers * batch)
  const out = new Float32Array(layers * row)
  for (let l = 0; l < layers; l++) out.set(data.subarray((l * batch + r) * row, (l * batch + r + 1) * row), l * row)
  return out
}

/** The inverse of extractRow over every row: [L, 1, ...rest] × B -> [L, B, ...rest]. */
export function stackRows (rows: Float32Array[], layers: number): Float32Array {
  return stackRowsInto(rows, layers, new Float32Array(rows.length * rows[0].length))
}

/** The same as stackRows, written into `out` (a view of exactly the stacked size): a row that is
 * the shared zero state (sharedZeros) is filled with zeros, not read. */
export function stackRowsInto (rows: Float32Array[], layers: number, out: Float32Array): Float32Array {
  const batch = rows.length
  const row = out.length / (layers * batch)
  for (let r = 0; r < batch; r++) {
    const zero = isSharedZeros(rows[r])
    for (let l = 0; l < layers; l++) {
      const at = (l * batch + r) * row
      if (zero) out.fill(0, at, at + row)
      else out.set(rows[r].subarray(l * row, (l + 1) * row), at)
    }
  }
  return out
}

/**
 * The zero state of `elements` floats, one array per size shared by every sequence that starts
 * from nothing: read (stacked into a step's input) and never written, and copied before it leaves
 * the worker (worker.ts post: results' arrays are transferred). A fresh array per sequence costs its pages' first-touch faults,
 * ~5 µs a 4 KiB page on this project's VMs (docs/design.md §10): 260 KB of T2R state, twice.
 */
export function sharedZeros (elements: number): Float32Array {
  let z = ZEROS.get(elements)
  if (z === undefined) ZEROS.set(elements, z = new Float32Array(elements))
  return z
}
const ZEROS = new Map<number, Float32Array>()

export function isSharedZeros (data: Float32Array): boolean {
  return ZEROS.get(data.length) === data
}

/** A float32 array kept from step to step and grown when a step needs more: `take(n)` is a view of
 * its first n elements, their contents whatever the last user left. */
export class Scratch {
  private data = new Float32Array(0)

  take (n: number): Float32Array {
    if (this.data.length < n) this.data = new Float32Array(Math.max(n, this.data.length * 2))
    return this.data.subarray(0, n)
  }
}

/** A graph input without the runtime: the worker wraps each into an ort.Tensor. */
export interface Feed {
  type: 'int64' | 'float32'
  data: BigInt64Array | Float32Array
  dims: number[]
}

/** Layer `layer` of a stacked state tensor [L, ...]: a view, no copy (the layer axis is outermost). */
export function layerView (data: Float32Array, layers: number, layer: number): Float32Array {
  const size = data.length / layers
  return data.subarray(layer * size, (layer + 1) * size)
}

/** The step's token inputs: ids [B, T] and each row's position. */
export function tokenFeeds (inputIds: number[][], positions: number[]): Record<string, Feed> {
  const b = inputIds.length
  const t = inputIds[0].length
  const ids = new BigInt64Array(b * t)
  inputIds.forEach((row, r) => { row.forEach((id, i) => { ids[r * t + i] = BigInt(id) }) })
  return {
    [ONNX_NAMES.inputIds]: { type: 'int64', data: ids, dims: [b, t] },
    [ONNX_NAMES.positionOffset]: { type: 'int64', data: BigInt64Array.from(positions, (p) => BigInt(p)), dims: [b] }
  }
}

/** The graph's inputs for one step: token ids [B, T], each row's position, the (stacked) state.
 * `layers`: for a decode graph, whose state inputs are per layer (views of the stacked state); null
 * for the step graph's stacked inputs. */
export function stepFeeds (specs: StateTensorSpec[], inputIds: number[][], positions: number[], state: Float32Array[], layers: number | null = null): Record<string, Feed> {
  const b = inputIds.length
  const feeds = tokenFeeds(inputIds, positions)
  // A KV cache's growing axis is the same for every row: batched decoding needs equal positions.
  specs.forEach((s, i) => {
    const dims = stateShape(s, positions[0], b)
    if (layers === null) {
      feeds[s.name] = { type: 'float32', data: state[i], dims }
    } else {
      for (let l = 0; l < layers; l++) feeds[layerTensorName(s.name, l)] = { type: 'float32', data: layerView(state[i], layers, l), dims: dims.slice(1) }
    }
  })
  return feeds
}

/** Where a decode graph writes a step's state: one stacked array per state tensor [L, B, ...] (a KV
 * cache one position longer), each layer's view given to the graph as that output's buffer, so the
 * per-layer outputs arrive stacked without a copy. The arrays are `reuse`'s where their sizes fit
 * (a state no one reads any more), else new ones. */
export function decodeOutputs (specs: StateTensorSpec[], layers: number, past: number, batch: number, reuse: Float32Array[] | null = null): { state: Float32Array[], buffers: Record<string, Feed> } {
  const buffers: Record<string, Feed> = {}
  const state = specs.map((s, i) => {
    const dims = stateShape(s, past + 1, batch)
    const size = dims.reduce((a, d) => a * d, 1)
    const data = reuse?.[i]?.length === size ? reuse[i] : new Float32Array(size)
    for (let l = 0; l < layers; l++) buffers[layerTensorName(s.output, l)] = { type: 'float32', data: layerView(data, layers, l), dims: dims.slice(1) }
    return data
  })
  return { state, buffers }
}

/** Something that carries a state of its own while it is not part of a decode batch. */
export interface StateOwner {
  /** Null while the state lives in a DecodeBatch's slot. */
  state: Float32Array[] | null
}

/**
 * The state of the sequences decoding together, in slots. Per state tensor, one array laid out
 * [L, capacity, ...rest] whose rows 0..B-1 hold the members (member r in row r): each layer's
 * first B rows are contiguous, so the decode graph reads them in place as that layer's input and
 * writes the step's state into the same rows of a second array (double buffering); the two swap
 * after the step. A steady batch allocates and copies nothing per step. A sequence joining copies
 * its rows into the next free slot; one leaving gets its rows copied out and the last member moves
 * into its slot: a change of membership costs a row per sequence that changes, never a restack of
 * the batch. Only for constant-size state (recurrent models); KV caches: PaddedCacheBatch.
 */
export class DecodeBatch<S extends StateOwner> {
  private members: S[] = []
  private capacity = 0
  /** What the next step reads (the members' state), and where it writes. */
  private front: Float32Array[] = []
  private back: Float32Array[] = []
  /** Elements of one row of one layer, per state tensor. */
  private readonly rowSize: number[]

  constructor (specs: StateTensorSpec[], private readonly layers: number) {
    this.rowSize = specs.map((s) => {
      if (s.growing_axis !== null) throw new Error(`DecodeBatch holds constant-size state only; ${s.name} grows`)
      return stateShape(s, 0, 1).slice(1).reduce((a, d) => a * d, 1)
    })
  }

  get size (): number { return this.members.length }

  /** Makes the members exactly `seqs` (in any row order) and returns them in row order: members
   * not in `seqs` leave with their rows, sequences not yet members join with theirs. */
  arrange (seqs: S[]): S[] {
    const wanted = new Set(seqs)
    for (const m of [...this.members]) if (!wanted.has(m)) this.evict(m)
    const joining = seqs.filter((s) => s.state !== null)
    this.reserve(this.members.length + joining.length)
    for (const s of joining) this.join(s, s.state!, 0, 1)
    return this.members
  }

  /** `seq` joins with its rows taken from row `r` of a stacked [L, batch, ...] state (a prefill's
   * output), copied straight into its slot: it never holds a state of its own. */
  admit (seq: S, stacked: Float32Array[], r: number, batch: number): void {
    this.reserve(this.members.length + 1)
    this.join(seq, stacked, r, batch)
  }

  private join (seq: S, from: Float32Array[], r: number, batch: number): void {
    const m = this.members.length
    this.rowSize.forEach((size, i) => {
      for (let l = 0; l < this.layers; l++) {
        const at = (l * batch + r) * size
        this.front[i].set(from[i].subarray(at, at + size), (l * this.capacity + m) * size)
      }
    })
    seq.state = null
    this.members.push(seq)
  }

  /** Layer `layer` of state tensor `i`, the members' rows: the step's input (`front`) or where it
   * writes the next state (`back`). Views, no copy. */
  layerRows (which: 'front' | 'back', i: number, layer: number): Float32Array {
    const size = this.rowSize[i]
    const from = layer * this.capacity * size
    return (which === 'front' ? this.front : this.back)[i].subarray(from, from + this.members.length * size)
  }

  /** After a step wrote `back`: it becomes the members' state. */
  swap (): void {
    const front = this.front
    this.front = this.back
    this.back = front
  }

  /** The members' state stacked [L, B, ...] (a copy), for a graph without per-layer state. */
  stacked (): Float32Array[] {
    return this.rowSize.map((_, i) => {
      const out = new Float32Array(this.layers * this.members.length * this.rowSize[i])
      for (let l = 0; l < this.layers; l++) out.set(this.layerRows('front', i, l), l * this.members.length * this.rowSize[i])
      return out
    })
  }

  /** Takes a stacked [L, B, ...] state of the members (stacked()'s layout) as their new state. */
  load (state: Float32Array[]): void {
    state.forEach((d, i) => {
      for (let l = 0; l < this.layers; l++) this.layerRows('front', i, l).set(layerView(d, this.layers, l))
    })
  }

  /** `seq` leaves the batch with its own copy of its rows (`keep` false: with no state, nothing
   * copied, for a sequence that ends and whose state no one wants); the last member takes its slot. */
  evict (seq: S, keep = true): void {
    const r = this.members.indexOf(seq)
    if (r === -1) return
    const last = this.members.length - 1
    const own = this.rowSize.map((size) => keep ? new Float32Array(this.layers * size) : null)
    this.rowSize.forEach((size, i) => {
      for (let l = 0; l < this.layers; l++) {
        const base = l * this.capacity
        own[i]?.set(this.front[i].subarray((base + r) * size, (base + r + 1) * size), l * size)
        if (r !== last) this.front[i].copyWithin((base + r) * size, (base + last) * size, (base + last + 1) * size)
      }
    })
    seq.state = keep ? own as Float32Array[] : []
    this.members[r] = this.members[last]
    this.members.pop()
  }

  /** Every member leaves with its own rows. */
  release (): void {
    for (const m of [...this.members]) this.evict(m)
  }

  private reserve (rows: number): void {
    if (rows <= this.capacity) return
    const capacity = Math.max(rows, this.capacity * 2, 4)
    const grow = (old: Float32Array[], keep: boolean): Float32Array[] => this.rowSize.map((size, i) => {
      const data = new Float32Array(this.layers * capacity * size)
      if (keep) for (let l = 0; l < this.layers; l++) data.set(old[i].subarray(l * this.capacity * size, (l * this.capacity + this.members.length) * size), l * capacity * size)
      return data
    })
    this.front = grow(this.front, this.capacity > 0)
    this.back = grow(this.back, false)
    this.capacity = capacity
  }
}

/** Slots a padded cache's output arrays are allocated beyond the step's need: they are reused step
 * after step until the caches outgrow them. */
export const CACHE_HEADROOM = 64

/** A sequence whose state is a KV cache: `position` is its cache's length. */
export interface CacheOwner extends StateOwner {
  position: number
}

/**
 * A softmax model's decoding sequences side by side although their KV caches differ in length.
 * Per state tensor and layer one array [B, ...heads, past, ...rest] (the decode graph's input,
 * `past` the growing axis): member r's cache is row r, right-aligned, its `position` real slots last
 * and the slots before them padding, which the decode graph masks (it reads each row's length from
 * `position_offset`: model.json's `decode_padded_cache`). A step's outputs, one slot longer, are the
 * next step's inputs as they are. A change of membership rebuilds the arrays once before the next
 * step (the graph copies the whole cache every step anyway), with `past` the longest member's length:
 * padding never outgrows the batch's longest cache. The step writes its outputs into a second set
 * of arrays (`outputs`), kept with room for CACHE_HEADROOM more slots; after it the two sets swap
 * roles, so a steady batch allocates nothing per step and nothing is copied out of ONNX Runtime.
 */
export class PaddedCacheBatch<S extends CacheOwner> {
  private members: S[] = []
  /** Per state tensor, per layer: the members' caches, rows as in `rowOf` (stale after a change). */
  private data: Float32Array[][] = []
  /** The whole arrays `data` are (the first) views of, and the arrays the next step writes into. */
  private holding: Float32Array[][] = []
  private spare: Float32Array[][] = []
  /** The views of `spare` handed out by the last outputs(). */
  private written: Float32Array[][] | null = null
  private past = 0
  private rowOf = new Map<S, number>()
  private changed = false
  /** Per state tensor: elements before the growing axis within a row, and after it. */
  private readonly outer: number[]
  private readonly inner: number[]

  constructor (private readonly specs: StateTensorSpec[], private readonly layers: number) {
    this.outer = []
    this.inner = []
    for (const s of specs) {
      if (s.growing_axis === null) throw new Error(`PaddedCacheBatch holds KV caches; ${s.name} does not grow`)
      const dims = stateShape(s, 1, 1)
      this.outer.push(dims.slice(2, s.growing_axis).reduce((a, d) => a * d, 1))
      this.inner.push(dims.slice(s.growing_axis + 1).reduce((a, d) => a * d, 1))
    }
  }

  get size (): number { return this.members.length }

  /** Makes the members exactly `seqs` and returns them in row order (as DecodeBatch.arrange). */
  arrange (seqs: S[]): S[] {
    const wanted = new Set(seqs)
    for (const m of [...this.members]) if (!wanted.has(m)) this.evict(m)
    const joining = seqs.filter((s) => s.state !== null)
    if (joining.length > 0 || this.changed) this.rebuild(joining)
    return this.members
  }

  /** The step's state inputs: name -> [B, ...] per layer (the arrays themselves, no copy). */
  feeds (): Record<string, Feed> {
    const feeds: Record<string, Feed> = {}
    this.specs.forEach((s, i) => {
      const dims = stateShape(s, this.past, this.members.length).slice(1)
      for (let l = 0; l < this.layers; l++) feeds[layerTensorName(s.name, l)] = { type: 'float32', data: this.data[i][l], dims }
    })
    return feeds
  }

  /** Where the next step writes its caches, one slot longer: views of the spare arrays, grown
   * (with room for CACHE_HEADROOM more slots) when too small. `arrays` is what advance() takes. */
  outputs (): { feeds: Record<string, Feed>, arrays: Float32Array[][] } {
    const b = this.members.length
    const feeds: Record<string, Feed> = {}
    const arrays = this.specs.map((s, i) => {
      const dims = stateShape(s, this.past + 1, b).slice(1)
      const n = dims.reduce((a, d) => a * d, 1)
      this.spare[i] ??= []
      return Array.from({ length: this.layers }, (_, l) => {
        if ((this.spare[i][l]?.length ?? 0) < n) this.spare[i][l] = new Float32Array(b * this.outer[i] * (this.past + 1 + CACHE_HEADROOM) * this.inner[i])
        const view = this.spare[i][l].subarray(0, n)
        feeds[layerTensorName(s.output, l)] = { type: 'float32', data: view, dims }
        return view
      })
    })
    this.written = arrays
    return { feeds, arrays }
  }

  /** After a step: its per-layer outputs (each cache one slot longer) are the members' caches.
   * Outputs written where outputs() said: the arrays the step read become the spare ones. */
  advance (outputs: Float32Array[][]): void {
    if (outputs === this.written) {
      const read = this.holding
      this.holding = this.spare
      this.spare = read
    } else {
      this.holding = outputs
    }
    this.written = null
    this.data = outputs
    this.past += 1
  }

  /** `seq` leaves with its own cache, stacked [L, 1, ..., position, ...]. */
  evict (seq: S, keep = true): void {
    const r = this.rowOf.get(seq)
    if (r === undefined) return
    const p = seq.position
    seq.state = !keep ? [] : this.specs.map((_, i) => {
      const own = new Float32Array(this.layers * this.outer[i] * p * this.inner[i])
      for (let l = 0; l < this.layers; l++) this.copyRow(this.data[i][l], r, this.past, own.subarray(l * this.outer[i] * p * this.inner[i]), 0, p, p, i)
      return own
    })
    this.rowOf.delete(seq)
    this.members.splice(this.members.indexOf(seq), 1)
    this.changed = true
  }

  /** Every member leaves with its own cache. */
  release (): void {
    for (const m of [...this.members]) this.evict(m)
    this.data = []
    this.holding = []
    this.spare = []
    this.written = null
    this.changed = false
  }

  /** Copies row `from` of `src` (past `srcPast`) into row `to` of `dst` (past `dstPast`): the last
   * `length` slots of each of its heads, right-aligned. */
  private copyRow (src: Float32Array, from: number, srcPast: number, dst: Float32Array, to: number, dstPast: number, length: number, i: number): void {
    const inner = this.inner[i]
    for (let a = 0; a < this.outer[i]; a++) {
      const s = ((from * this.outer[i] + a) * srcPast + srcPast - length) * inner
      const d = ((to * this.outer[i] + a) * dstPast + dstPast - length) * inner
      dst.set(src.subarray(s, s + length * inner), d)
    }
  }

  private rebuild (joining: S[]): void {
    const members = [...this.members, ...joining]
    const past = members.reduce((a, m) => Math.max(a, m.position), 0)
    const b = members.length
    this.data = this.specs.map((_, i) => Array.from({ length: this.layers }, (_, l) => {
      const out = new Float32Array(b * this.outer[i] * past * this.inner[i])
      members.forEach((m, r) => {
        const old = this.rowOf.get(m)
        if (old !== undefined) {
          this.copyRow(this.data[i][l], old, this.past, out, r, past, m.position, i)
        } else {
          // Its own cache [L, 1, ..., position, ...]: layer l is row 0 of a batch of one.
          const size = this.outer[i] * m.position * this.inner[i]
          this.copyRow(m.state![i].subarray(l * size, (l + 1) * size), 0, m.position, out, r, past, m.position, i)
        }
      })
      return out
    }))
    for (const m of joining) m.state = null
    // The arrays the old caches lived in are free now: the next step may write into them.
    this.spare = this.holding.length > 0 && this.spare.length === 0 ? this.holding : this.spare
    this.holding = this.data
    this.written = null
    this.members = members
    this.rowOf = new Map(members.map((m, r) => [m, r]))
    this.past = past
    this.changed = false
  }
}
