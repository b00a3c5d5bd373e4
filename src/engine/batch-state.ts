// The layout of recurrent state in the engine, with no ONNX Runtime in it (unit-tested).
//
// A sequence's state is one Float32Array per state tensor, shaped like the tensor with batch 1.
// Every state tensor's axis 0 is the layer and axis 1 the batch ([L, B, ...rest]), so a batch of
// sequences is their rows interleaved per layer. Decoding sequences share one stacked state that is
// reused step after step while the batch's members stay the same, and restacked only when they
// change: the common steady state costs no copies.
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
  const batch = rows.length
  const row = rows[0].length / layers
  const out = new Float32Array(layers * batch * row)
  for (let r = 0; r < batch; r++) {
    for (let l = 0; l < layers; l++) out.set(rows[r].subarray(l * row, (l + 1) * row), (l * batch + r) * row)
  }
  return out
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

/** The graph's inputs for one step: token ids [B, T], each row's position, the (stacked) state.
 * `layers`: for a decode graph, whose state inputs are per layer (views of the stacked state); null
 * for the step graph's stacked inputs. */
export function stepFeeds (specs: StateTensorSpec[], inputIds: number[][], positions: number[], state: Float32Array[], layers: number | null = null): Record<string, Feed> {
  const b = inputIds.length
  const t = inputIds[0].length
  const ids = new BigInt64Array(b * t)
  inputIds.forEach((row, r) => { row.forEach((id, i) => { ids[r * t + i] = BigInt(id) }) })
  const feeds: Record<string, Feed> = {
    [ONNX_NAMES.inputIds]: { type: 'int64', data: ids, dims: [b, t] },
    [ONNX_NAMES.positionOffset]: { type: 'int64', data: BigInt64Array.from(positions, (p) => BigInt(p)), dims: [b] }
  }
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
  /** Null while the state lives stacked inside a DecodeBatch. */
  state: Float32Array[] | null
}

/** The stacked state of the sequences decoding together, kept while the members stay the same. */
export class DecodeBatch<S extends StateOwner> {
  private members: S[] = []
  private stacked: Float32Array[] | null = null
  /** The state the last step consumed: nothing reads it again, so the next step may write into it
   * (double buffering: a steady batch allocates no state per step). */
  private spare: Float32Array[] | null = null

  constructor (private readonly specs: StateTensorSpec[], private readonly layers: number) {}

  /** The stacked state for `seqs` (in this order), restacking only if the members changed. */
  stateFor (seqs: S[]): Float32Array[] {
    if (this.stacked !== null && seqs.length === this.members.length && seqs.every((s, i) => s === this.members[i])) return this.stacked
    this.release()
    this.stacked = this.specs.map((_, i) => stackRows(seqs.map((s) => s.state![i]), this.layers))
    this.members = seqs
    for (const s of seqs) s.state = null
    return this.stacked
  }

  /** Takes the step's output state as the new stacked state of the same members. */
  update (state: Float32Array[]): void {
    this.spare = this.stacked
    this.stacked = state
  }

  /** Arrays the next step may write its state into (see `spare`), once; null if there are none. */
  takeSpare (): Float32Array[] | null {
    const spare = this.spare
    this.spare = null
    return spare
  }

  /** Hands every member its own row back and empties the batch. */
  release (): void {
    const stacked = this.stacked
    if (stacked !== null) {
      this.members.forEach((s, r) => { s.state = stacked.map((d) => extractRow(d, this.layers, this.members.length, r)) })
    }
    this.members = []
    this.stacked = null
    this.spare = null
  }

  /** Forgets the stacked state without handing it back (after a failed step). */
  discard (): void {
    this.members = []
    this.stacked = null
    this.spare = null
  }
}
