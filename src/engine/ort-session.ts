// Creating the ONNX Runtime session with the configured execution provider. Asking for CUDA where
// its binaries or a GPU are missing is an error that says what is missing: never a silent CPU run.
import { existsSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import ort from 'onnxruntime-node'
import { ONNX_IO } from '../contract/onnx-io.ts'
import type { RuntimeOptions } from './protocol.ts'

function cudaProviderLibrary (): string | null {
  const require = createRequire(import.meta.url)
  const root = join(dirname(require.resolve('onnxruntime-node/package.json')), 'bin')
  const stack = [root]
  while (stack.length > 0) {
    const dir = stack.pop()!
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) stack.push(join(dir, entry.name))
      else if (entry.name.startsWith('libonnxruntime_providers_cuda')) return join(dir, entry.name)
    }
  }
  return null
}

export function cudaMissing (): string | null {
  if (cudaProviderLibrary() === null) {
    return 'onnxruntime-node has no CUDA provider library (libonnxruntime_providers_cuda.so): install it with ' +
      'ONNXRUNTIME_NODE_INSTALL=cuda12 and onnxruntime-node\'s install script allowed (see docs/deployment.md)'
  }
  if (!existsSync('/dev/nvidiactl') && !existsSync('/dev/nvidia0')) {
    return 'no NVIDIA GPU device (/dev/nvidiactl or /dev/nvidia0) is visible to this process'
  }
  return null
}

/** The folder's decode graph (contract/onnx-io.json's decode_graph, beside model.onnx), if it has
 * one: the engine runs decoding steps through it and prefill through model.onnx (docs/design.md §7). */
export function decodeGraphPath (modelPath: string): string | null {
  const path = join(dirname(modelPath), ONNX_IO.decode_graph.file)
  return existsSync(path) ? path : null
}

export async function createSession (modelPath: string, runtime: RuntimeOptions): Promise<ort.InferenceSession> {
  const options: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: runtime.intraOpThreads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    // Off by default: spinning pool threads take the cores HTTP and other models need (§10, Threads).
    extra: { session: { intra_op: { allow_spinning: runtime.intraOpSpinning ? '1' : '0' } } }
  }
  if (runtime.executionProvider === 'cuda') {
    const missing = cudaMissing()
    if (missing !== null) throw new Error(`CUDA execution provider requested but ${missing}`)
    options.executionProviders = [{ name: 'cuda', deviceId: runtime.cudaDevice }]
  } else {
    options.executionProviders = ['cpu']
  }
  return await ort.InferenceSession.create(modelPath, options)
}
