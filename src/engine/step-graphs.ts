// The model's step graphs in ONNX Runtime: model.onnx (any number of tokens per row, the state
// stacked [layers, batch, ...]) and, where the folder has one, decode.onnx (one token per row, the
// state per layer: contract/onnx-io.json's decode_graph). `run` takes and returns the state stacked
// (a prefill, a sequence decoding alone); `decodeBatch` runs a DecodeBatch's members on their slots.
import ort from '#onnxruntime'
import { stateShape, type Manifest } from '../models/manifest.ts'
import { decodeOutputs, stepFeeds, tokenFeeds, type CacheOwner, type DecodeBatch, type Feed, type PaddedCacheBatch, type StateOwner } from './batch-state.ts'
import { layerTensorName, ONNX_NAMES } from '../contract/onnx-io.ts'
import type { GraphSession, Outputs } from './ort-session.ts'

export type { Outputs }

export interface StepResult {
  out: Outputs
  /** The state after the step, stacked like the state it continued. */
  state: Float32Array[]
}

export function tensors (feeds: Record<string, Feed>): Record<string, ort.Tensor> {
  const out: Record<string, ort.Tensor> = {}
  for (const [name, f] of Object.entries(feeds)) out[name] = new ort.Tensor(f.type, f.data, f.dims)
  return out
}

export class StepGraphs {
  private logits = new Float32Array(0)
  private logsumexp = new Float32Array(0)

  /** Whether the decode graph has the optional logsumexp output (contract/onnx-io.json). */
  private readonly decodeHasLogsumexp: boolean

  constructor (private readonly step: GraphSession, private readonly decode: GraphSession | null, private readonly manifest: Manifest) {
    this.decodeHasLogsumexp = decode?.outputNames.includes(ONNX_NAMES.logsumexp) ?? false
  }

  /** Whether single-token steps run through a decode graph. */
  get hasDecodeGraph (): boolean { return this.decode !== null }

  /** One step of `ids` [B, T] at `positions`, continuing the stacked `state`. `into`: arrays of
   * exactly the stacked size of the state after the step (a constant-size state), written there;
   * without it the state after the step is in new arrays. */
  async run (ids: number[][], positions: number[], state: Float32Array[], into?: Float32Array[]): Promise<StepResult> {
    const specs = this.manifest.state
    if (this.decode === null || ids[0].length !== 1) {
      let fetches: Record<string, ort.Tensor | null> | undefined
      if (into !== undefined) {
        fetches = Object.fromEntries(this.step.outputNames.map((n) => [n, null]))
        specs.forEach((s, i) => { fetches![s.output] = new ort.Tensor('float32', into[i], stateShape(s, positions[0] + ids[0].length, ids.length)) })
      }
      const out = await this.step.run(tensors(stepFeeds(specs, ids, positions, state)), fetches)
      return { out, state: into ?? specs.map((s) => out[s.output].data as Float32Array) }
    }
    const layers = this.manifest.layers
    const written = decodeOutputs(specs, layers, positions[0], ids.length, into)
    // Outputs given no buffer (logits, logsumexp) are allocated by ONNX Runtime.
    const fetches: Record<string, ort.Tensor | null> = tensors(written.buffers)
    for (const name of this.decode.outputNames) if (!(name in fetches)) fetches[name] = null
    const out = await this.decode.run(tensors(stepFeeds(specs, ids, positions, state, layers)), fetches)
    return { out, state: written.state }
  }

  /** One decoding step of a batch's members (one token each, in row order), their state read and
   * written in the batch's slots (then swapped in). Without a decode graph, through the step graph
   * on a stacked copy. */
  async decodeBatch<S extends StateOwner> (ids: number[], positions: number[], batch: DecodeBatch<S>): Promise<Outputs> {
    const specs = this.manifest.state
    const rows = ids.length
    if (this.decode === null) {
      const out = await this.step.run(tensors(stepFeeds(specs, ids.map((id) => [id]), positions, batch.stacked())))
      batch.load(specs.map((s) => out[s.output].data as Float32Array))
      return out
    }
    const feeds = tensors(tokenFeeds(ids.map((id) => [id]), positions))
    const fetches: Record<string, ort.Tensor | null> = {}
    specs.forEach((s, i) => {
      const dims = stateShape(s, 0, rows).slice(1)
      for (let l = 0; l < this.manifest.layers; l++) {
        feeds[layerTensorName(s.name, l)] = new ort.Tensor('float32', batch.layerRows('front', i, l), dims)
        fetches[layerTensorName(s.output, l)] = new ort.Tensor('float32', batch.layerRows('back', i, l), dims)
      }
    })
    // (onnxruntime-node 1.30 returns a fresh copy of every output, pre-allocated or not: the
    // state's copy is garbage at once, and is what makes V8 mark-compact every ~65 ms at one
    // stream. Only a binding that returns the given buffers can avoid it.)
    this.logitsInto(fetches, rows)
    const out = await this.decode.run(feeds, fetches)
    batch.swap()
    return out
  }

  /** One decoding step of a softmax model's batch: its members' KV caches padded to one length
   * (PaddedCacheBatch), the step's outputs (one slot longer) becoming their caches. */
  async decodeCaches<S extends CacheOwner> (ids: number[], positions: number[], batch: PaddedCacheBatch<S>): Promise<Outputs> {
    if (this.decode === null) throw new Error('batched KV-cache decoding needs decode.onnx')
    const feeds = tensors({ ...tokenFeeds(ids.map((id) => [id]), positions), ...batch.feeds() })
    // The caches one slot longer, written into the batch's spare arrays (nothing allocated per step).
    const written = batch.outputs()
    const fetches: Record<string, ort.Tensor | null> = tensors(written.feeds)
    this.logitsInto(fetches, ids.length)
    const out = await this.decode.run(feeds, fetches)
    batch.advance(written.arrays)
    return out
  }

  /** Logits (and logsumexp) of `rows` rows into buffers kept from step to step, read by the caller
   * before the next step. */
  private logitsInto (fetches: Record<string, ort.Tensor | null>, rows: number): void {
    const vocab = this.manifest.vocab_size
    if (this.logits.length < rows * vocab) {
      this.logits = new Float32Array(rows * vocab)
      this.logsumexp = new Float32Array(rows)
    }
    fetches[ONNX_NAMES.logits] = new ort.Tensor('float32', this.logits.subarray(0, rows * vocab), [rows, vocab])
    if (this.decodeHasLogsumexp) fetches[ONNX_NAMES.logsumexp] = new ort.Tensor('float32', this.logsumexp.subarray(0, rows), [rows])
  }

  async release (): Promise<void> {
    await this.step.release()
    if (this.decode !== null) await this.decode.release()
  }
}
