// The model's step graphs in ONNX Runtime: model.onnx (any number of tokens per row, the state
// stacked [layers, batch, ...]) and, where the folder has one, decode.onnx (one token per row, the
// state per layer: contract/onnx-io.json's decode_graph). Callers hold the state stacked either way;
// for the decode graph its layers go in as views and come back written into one stacked array.
import ort from '#onnxruntime'
import type { Manifest } from '../models/manifest.ts'
import { decodeOutputs, stepFeeds, type Feed } from './batch-state.ts'

export type Outputs = ort.InferenceSession.OnnxValueMapType

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
  constructor (private readonly step: ort.InferenceSession, private readonly decode: ort.InferenceSession | null, private readonly manifest: Manifest) {}

  /** Whether single-token steps run through a decode graph. */
  get hasDecodeGraph (): boolean { return this.decode !== null }

  /** One step of `ids` [B, T] at `positions`, continuing the stacked `state`. `reuse`: arrays no one
   * reads any more, which the decode graph may write the new state into. */
  async run (ids: number[][], positions: number[], state: Float32Array[], reuse: Float32Array[] | null = null): Promise<StepResult> {
    const specs = this.manifest.state
    if (this.decode === null || ids[0].length !== 1) {
      const out = await this.step.run(tensors(stepFeeds(specs, ids, positions, state)))
      return { out, state: specs.map((s) => out[s.output].data as Float32Array) }
    }
    const layers = this.manifest.layers
    const written = decodeOutputs(specs, layers, positions[0], ids.length, reuse)
    // Outputs given no buffer (logits, logsumexp) are allocated by ONNX Runtime.
    const fetches: Record<string, ort.Tensor | null> = tensors(written.buffers)
    for (const name of this.decode.outputNames) if (!(name in fetches)) fetches[name] = null
    const out = await this.decode.run(tensors(stepFeeds(specs, ids, positions, state, layers)), fetches)
    return { out, state: written.state }
  }

  async release (): Promise<void> {
    await this.step.release()
    if (this.decode !== null) await this.decode.release()
  }
}
