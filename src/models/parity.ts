// Checks an ONNX export in the runtime that serves it against the reference logits the trainer
// wrote (parity.json): the whole sequence in one call, then token by token (T2R: the state after
// both paths must agree too). This is how prefill and decode are proven to compute the same
// function; token by token runs through decode.onnx where the folder has one (what the engine decodes with).
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createSession, decodeGraphPath, type SessionRuntime } from '../engine/ort-session.ts'
import { StepGraphs } from '../engine/step-graphs.ts'
import { LOGITS_REFERENCE, ONNX_NAMES, stateTensorsFor } from '../contract/onnx-io.ts'
import type { ParityReference } from '../contract/schemas.ts'
import { parityContract } from '../contract/validate.ts'
import { parseManifest, stateElements, type Manifest } from './manifest.ts'

export interface ParityReport {
  tokens: number
  /** Whether token by token ran through the folder's decode.onnx (else through model.onnx). */
  decodeGraph: boolean
  /** max |Δlogit| of the one-call run's last position vs PyTorch. */
  fullMaxDiff: number
  /** max |Δlogit| over every position when fed one token at a time. */
  stepwiseMaxDiff: number
  /** T2R: max |Δ| between the state after one call and after token-by-token feeding. */
  stateMaxDiff: number | null
  /** T2R: max |Δ| between the ONNX state and PyTorch's. */
  referenceStateMaxDiff: number | null
}

function floats (b64: string): Float32Array {
  const buf = Buffer.from(b64, 'base64')
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength))
}

/** A float32 array parity.json holds under `key` (contract/onnx-io.json names the keys). */
function referenceFloats (ref: ParityReference, key: string): Float32Array | undefined {
  const b64 = (ref as Record<string, unknown>)[key]
  return typeof b64 === 'string' ? floats(b64) : undefined
}

function maxDiff (a: ArrayLike<number>, b: ArrayLike<number>, bOffset = 0, n = a.length): number {
  let d = 0
  for (let i = 0; i < n; i++) d = Math.max(d, Math.abs(a[i] - b[bOffset + i]))
  return d
}

function zeroState (manifest: Manifest): Float32Array[] {
  return manifest.state.map((s) => new Float32Array(stateElements(s, 0)))
}

/** On the CPU by default; scripts/gpu-check.ts runs it on the CUDA provider. */
export async function checkParity (dir: string, runtime: SessionRuntime = { executionProvider: 'cpu', cudaDevice: 0, intraOpThreads: 1 }): Promise<ParityReport> {
  const manifest = parseManifest(JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')), dir)
  const ref = parityContract.parse(JSON.parse(readFileSync(join(dir, 'parity.json'), 'utf8')), join(dir, 'parity.json'))
  const logits = referenceFloats(ref, LOGITS_REFERENCE)
  if (logits === undefined) throw new Error(`${dir}/parity.json: no ${LOGITS_REFERENCE}`)
  const V = ref.vocab_size
  const ids = ref.input_ids
  const modelPath = join(dir, 'model.onnx')
  const decodePath = decodeGraphPath(modelPath)
  const graphs = new StepGraphs(await createSession(modelPath, runtime),
    decodePath === null ? null : await createSession(decodePath, runtime), manifest)
  try {
    const full = await graphs.run([ids], [0], zeroState(manifest))
    const fullMaxDiff = maxDiff(full.out[ONNX_NAMES.logits].data as Float32Array, logits, (ids.length - 1) * V, V)
    let state = zeroState(manifest)
    let stepwiseMaxDiff = 0
    for (let t = 0; t < ids.length; t++) {
      const step = await graphs.run([[ids[t]]], [t], state)
      stepwiseMaxDiff = Math.max(stepwiseMaxDiff, maxDiff(step.out[ONNX_NAMES.logits].data as Float32Array, logits, t * V, V))
      state = step.state
    }
    let stateMaxDiff: number | null = null
    let referenceStateMaxDiff: number | null = null
    if (manifest.architecture !== 'softmax') {
      stateMaxDiff = Math.max(...full.state.map((s, i) => maxDiff(s, state[i])))
      // PyTorch's state, where parity.json holds it: one key per state tensor (contract/onnx-io.json).
      const refs = stateTensorsFor(manifest.architecture).map((t) => (t.reference === null ? undefined : referenceFloats(ref, t.reference)))
      if (refs.every((r) => r !== undefined)) {
        referenceStateMaxDiff = Math.max(...refs.map((r, i) => maxDiff(full.state[i], r)))
      }
    }
    return { tokens: ids.length, decodeGraph: graphs.hasDecodeGraph, fullMaxDiff, stepwiseMaxDiff, stateMaxDiff, referenceStateMaxDiff }
  } finally {
    await graphs.release()
  }
}

export const PARITY_TOLERANCE = 1e-3

export function parityFailure (r: ParityReport): string | null {
  const worst = Math.max(r.fullMaxDiff, r.stepwiseMaxDiff)
  if (worst > PARITY_TOLERANCE) return `max |Δlogit| ${worst.toExponential(3)} exceeds ${PARITY_TOLERANCE}`
  if (r.stateMaxDiff !== null && r.stateMaxDiff > PARITY_TOLERANCE) return `state differs between one-call and token-by-token feeding by ${r.stateMaxDiff.toExponential(3)}`
  return null
}
