// Creating the ONNX Runtime session with the configured execution provider. Asking for CUDA where
// its binaries or a GPU are missing is an error that says what is missing: never a silent CPU run.
// The CUDA provider comes with its own ONNX Runtime (scripts/setup-gpu.sh): `#onnxruntime` is that
// copy when node runs with --conditions=t2r-cuda (package.json "imports"), else the project's.
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import ort from '#onnxruntime'
import { ONNX_IO } from '../contract/onnx-io.ts'
import { createDirectSession, directAddon, type Addon } from './native-session.ts'
import type { RuntimeOptions } from './protocol.ts'

const SETUP = 'run `bash scripts/setup-gpu.sh` and start node with NODE_OPTIONS=--conditions=t2r-cuda (docs/deployment.md, "GPU")'

/** The onnxruntime-node package this process loaded: its folder and version. */
function loadedRuntime (): { dir: string, version: string } {
  const entry = fileURLToPath(import.meta.resolve('#onnxruntime'))
  const dir = dirname(createRequire(entry).resolve('onnxruntime-node/package.json'))
  return { dir, version: (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version }
}

export function cudaMissing (): string | null {
  const { dir, version } = loadedRuntime()
  // ONNX Runtime looks for the provider beside its own libonnxruntime.so.
  const provider = join(dir, 'bin', 'napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so')
  if (!existsSync(provider)) {
    return `the loaded onnxruntime-node ${version} (${dir}) has no CUDA provider library (libonnxruntime_providers_cuda.so): ${SETUP}`
  }
  if (!existsSync('/dev/nvidiactl') && !existsSync('/dev/nvidia0')) {
    return 'no NVIDIA GPU device (/dev/nvidiactl or /dev/nvidia0) is visible to this process'
  }
  return null
}

/** What a session needs of the runtime options (the parity check makes sessions too). */
export type SessionRuntime = Pick<RuntimeOptions, 'executionProvider' | 'cudaDevice' | 'intraOpThreads'> & Partial<Pick<RuntimeOptions, 'intraOpSpinning'>>

/** The folder's decode graph (contract/onnx-io.json's decode_graph, beside model.onnx), if it has
 * one: the engine runs decoding steps through it and prefill through model.onnx (docs/design.md §7). */
export function decodeGraphPath (modelPath: string): string | null {
  const path = join(dirname(modelPath), ONNX_IO.decode_graph.file)
  return existsSync(path) ? path : null
}

/** What the engine runs a graph through: ONNX Runtime's session, its names, `run` and `release`. */
export interface GraphSession {
  readonly inputNames: readonly string[]
  readonly outputNames: readonly string[]
  /** Every output when `fetches` is not given; a fetch given a tensor is written into it. */
  run: (feeds: Record<string, ort.Tensor>, fetches?: Record<string, ort.Tensor | null>) => Outputs | Promise<Outputs>
  release: () => Promise<void>
}

export type Outputs = ort.InferenceSession.OnnxValueMapType

/** onnxruntime-node's native session class (dist/binding.js), which onnxruntime-common wraps. */
interface NativeSession {
  loadModel: (path: string, options: ort.InferenceSession.SessionOptions) => void
  run: (feeds: Record<string, ort.Tensor>, fetches: Record<string, ort.Tensor | null>, options: object) => Outputs
  dispose: () => void
  readonly inputMetadata: ReadonlyArray<{ name: string }>
  readonly outputMetadata: ReadonlyArray<{ name: string }>
}
interface NativeBinding { binding: { InferenceSession: new () => NativeSession }, initOrt: () => void }

let native: NativeBinding | null | undefined
/** The loaded onnxruntime-node's native binding, or null where its layout is not the one known here. */
function nativeBinding (): NativeBinding | null {
  if (native !== undefined) return native
  try {
    const b = createRequire(import.meta.url)(join(loadedRuntime().dir, 'dist', 'binding.js')) as Partial<NativeBinding>
    native = typeof b.binding?.InferenceSession === 'function' && typeof b.initOrt === 'function' ? b as NativeBinding : null
  } catch {
    native = null
  }
  return native
}

/** Which binding CPU sessions go through (T2R_ORT_DIRECT): unset, the direct one where it is built
 * and loads; 1, the direct one or an error saying why not; 0, onnxruntime-node's. */
function directWanted (): boolean | null {
  const v = process.env.T2R_ORT_DIRECT
  if (v === undefined || v === '') return null
  if (v === '1' || v === '0') return v === '1'
  throw new Error(`T2R_ORT_DIRECT must be 1 (require the direct ONNX Runtime binding), 0 (use onnxruntime-node's) or unset (the direct one where built), got ${JSON.stringify(v)}`)
}

type Binding = { binding: 'direct', reason: string, addon: Addon } | { binding: 'onnxruntime-node', reason: string }

/** Which binding a session in this process gets, and why (the worker reports it); CPU sessions
 * only where `executionProvider` is not given. The one place createSession decides it. */
export function bindingInUse (executionProvider: SessionRuntime['executionProvider'] = 'cpu'): Binding {
  if (executionProvider !== 'cpu') return { binding: 'onnxruntime-node', reason: 'the direct binding is CPU only' }
  const wanted = directWanted()
  if (wanted === false) return { binding: 'onnxruntime-node', reason: 'T2R_ORT_DIRECT=0' }
  const d = directAddon(loadedRuntime().dir)
  if ('addon' in d) return { binding: 'direct', reason: `ONNX Runtime ${d.version} through native/ort_direct.c`, addon: d.addon }
  if (wanted === true) throw new Error(`T2R_ORT_DIRECT=1 but the direct ONNX Runtime binding cannot be used: ${d.error}`)
  return { binding: 'onnxruntime-node', reason: d.error }
}

/**
 * The engine's session, called synchronously on the calling thread (the engine's own worker). On
 * CPU, through native/ort_direct.c where it is built (nothing returned is copied, see
 * native-session.ts); else, and for CUDA, onnxruntime-node's native session called directly:
 * onnxruntime-common's `run` defers every call to a setImmediate turn and re-checks feeds and
 * fetches by name (measured 0.363 against 0.325 ms a decode step of sotu-t2r-q8, 1 thread, 2,000
 * steps × 5 interleaved rounds). Falls back to onnxruntime-common's session where that binding is
 * not found.
 */
export async function createSession (modelPath: string, runtime: SessionRuntime): Promise<GraphSession> {
  const use = bindingInUse(runtime.executionProvider)
  if (use.binding === 'direct') return createDirectSession(use.addon, modelPath, runtime.intraOpThreads, runtime.intraOpSpinning === true)
  const options = sessionOptions(runtime)
  const b = nativeBinding()
  let s: NativeSession
  try {
    if (b === null) return await ort.InferenceSession.create(modelPath, options)
    b.initOrt()
    s = new b.binding.InferenceSession()
    s.loadModel(modelPath, options)
  } catch (e) {
    throw runtime.executionProvider === 'cuda' ? cudaFailed(e) : e
  }
  const inputNames = s.inputMetadata.map((m) => m.name)
  const outputNames = s.outputMetadata.map((m) => m.name)
  const all = Object.fromEntries(outputNames.map((n) => [n, null]))
  return {
    inputNames,
    outputNames,
    run: (feeds, fetches) => s.run(feeds, fetches ?? all, {}),
    release: async () => { s.dispose() }
  }
}

function cudaFailed (e: unknown): Error {
  // Typically a CUDA library the provider needs is absent ("libcublasLt.so.13: cannot open ...").
  return new Error(`CUDA execution provider failed to start: ${(e as Error).message} (\`bash scripts/setup-gpu.sh --check\` lists what this host lacks)`)
}

function sessionOptions (runtime: SessionRuntime): ort.InferenceSession.SessionOptions {
  const options: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: runtime.intraOpThreads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    // Off by default: spinning pool threads take the cores HTTP and other models need (§10, Threads).
    extra: { session: { intra_op: { allow_spinning: runtime.intraOpSpinning === true ? '1' : '0' } } }
  }
  if (runtime.executionProvider === 'cpu') {
    options.executionProviders = ['cpu']
    return options
  }
  const missing = cudaMissing()
  if (missing !== null) throw new Error(`CUDA execution provider requested but ${missing}`)
  options.executionProviders = [{ name: 'cuda', deviceId: runtime.cudaDevice }]
  return options
}
