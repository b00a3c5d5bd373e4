// The ONNX step graph's tensor names and shapes (contract/onnx-io.json), which the exporter
// (trainer/t2r/export.py), the engine's worker and the parity check share.
import { Type, type Static } from '@sinclair/typebox'
import { loadChecked } from './load.ts'
import type { Manifest, StateTensorSpec } from './schemas.ts'

const Shape = Type.Array(Type.String())
const Io = Type.Object({ name: Type.String(), dtype: Type.String(), shape: Shape })
const ReferencedIo = Type.Object({ name: Type.String(), dtype: Type.String(), shape: Shape, reference: Type.String() })
const StateTensor = Type.Object({
  name: Type.String(),
  output: Type.String(),
  dtype: Type.Literal('float32'),
  shape: Shape,
  output_shape: Shape,
  growing_axis: Type.Union([Type.Integer(), Type.Null()]),
  reference: Type.Union([Type.String(), Type.Null()])
})
const OnnxIoSchema = Type.Object({
  opset: Type.Integer(),
  decode_graph: Type.Object({ file: Type.String(), seq: Type.Literal(1), layer_name: Type.String() }),
  dynamic_axes: Type.Array(Type.String()),
  manifest_dims: Type.Array(Type.String()),
  inputs: Type.Tuple([Io, Io]),
  outputs: Type.Tuple([ReferencedIo]),
  extra_outputs: Type.Tuple([Io]),
  state: Type.Record(Type.String(), Type.Object({ architectures: Type.Array(Type.String()), tensors: Type.Array(StateTensor) }))
})
export type ContractStateTensor = Static<typeof StateTensor>

export const ONNX_IO = loadChecked('onnx-io.json', OnnxIoSchema)

/** The graph's tensor names, by role. */
export const ONNX_NAMES = {
  inputIds: ONNX_IO.inputs[0].name,
  positionOffset: ONNX_IO.inputs[1].name,
  logits: ONNX_IO.outputs[0].name,
  logsumexp: ONNX_IO.extra_outputs[0].name
} as const

/** A decode graph's input (or output) for one layer of the state tensor `name`. */
export function layerTensorName (name: string, layer: number): string {
  return ONNX_IO.decode_graph.layer_name.replace('{name}', name).replace('{layer}', String(layer))
}

/** The parity.json key holding PyTorch's logits. */
export const LOGITS_REFERENCE = ONNX_IO.outputs[0].reference

export function stateTensorsFor (architecture: Manifest['architecture']): ContractStateTensor[] {
  const family = Object.values(ONNX_IO.state).find((f) => f.architectures.includes(architecture))
  if (family === undefined) throw new Error(`contract/onnx-io.json has no state for architecture ${architecture}`)
  return family.tensors
}

/** What a manifest's `state` must be: its architecture's contract tensors with its sizes filled in. */
export function expectedState (m: Manifest): StateTensorSpec[] {
  // A manifest without kv_heads predates grouped-query attention: its key/value heads are its heads.
  const dims: Record<string, number | null> = { layers: m.layers, kv_heads: m.kv_heads ?? m.heads, head_dim: m.head_dim, feature_dim: m.feature_dim, vocab_size: m.vocab_size }
  return stateTensorsFor(m.architecture).map((t) => ({
    name: t.name,
    output: t.output,
    shape: t.shape.map((d) => (ONNX_IO.dynamic_axes.includes(d) ? d : dims[d] ?? d)),
    dtype: t.dtype,
    growing_axis: t.growing_axis
  }))
}
