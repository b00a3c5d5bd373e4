// ONNX Runtime sessions through native/ort_direct.c: the same libonnxruntime.so.1 that
// onnxruntime-node ships, called through its C API so that an output given a tensor is written
// into it and returned as that tensor, nothing copied (one given none is copied once, as before).
// onnxruntime-node's binding copies every output, given a buffer or not: at 32 rows of the shipped
// model that is 8.5 MB of recurrent state a step, allocated, copied and garbage at once
// (docs/design.md §10).
//
// CPU only. The addon is built from source at install (scripts/build-native.sh: gcc and Node-API
// headers from npm); where it is not built, does not load, or T2R_ORT_DIRECT=0, sessions go
// through onnxruntime-node as before (src/engine/ort-session.ts).
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import ort from '#onnxruntime'
import type { GraphSession, Outputs } from './ort-session.ts'

type Data = Float32Array | Int32Array | BigInt64Array

export interface Addon {
  init: (libPath: string) => string
  create: (modelPath: string, intraOpThreads: number, interOpThreads: number, allowSpinning: boolean) => { session: object, inputs: string[], outputs: string[] }
  run: (session: object, inputs: number[], inputData: Data[], inputDims: ReadonlyArray<readonly number[]>, outputs: number[], outputData: Array<Data | null>, outputDims: ReadonlyArray<readonly number[] | null>) => Array<[Data, number[]] | null>
  release: (session: object) => void
}

/** Where scripts/build-native.sh puts the addon: native/build/ at the package root (src/engine and
 * dist/engine are both two levels below it). */
export const ADDON_PATH = fileURLToPath(new URL('../../native/build/ort_direct.node', import.meta.url))

let loaded: { addon: Addon, version: string } | { error: string } | undefined

/** The addon, initialised on `runtimeDir`'s libonnxruntime.so.1; or why it cannot be used. */
export function directAddon (runtimeDir: string): { addon: Addon, version: string } | { error: string } {
  if (loaded !== undefined) return loaded
  const lib = join(runtimeDir, 'bin', 'napi-v6', process.platform, process.arch, 'libonnxruntime.so.1')
  if (process.platform !== 'linux') loaded = { error: `the direct binding is built for Linux only (this is ${process.platform})` }
  else if (!existsSync(ADDON_PATH)) loaded = { error: `${ADDON_PATH} is not built (bash scripts/build-native.sh)` }
  else if (!existsSync(lib)) loaded = { error: `no ${lib}` }
  else {
    try {
      const addon = createRequire(import.meta.url)(ADDON_PATH) as Addon
      loaded = { addon, version: addon.init(lib) }
    } catch (e) {
      loaded = { error: (e as Error).message }
    }
  }
  return loaded
}

const TYPES = new Map<unknown, ort.Tensor.Type>([[Float32Array, 'float32'], [Int32Array, 'int32'], [BigInt64Array, 'int64']])

export function createDirectSession (addon: Addon, modelPath: string, intraOpThreads: number, allowSpinning: boolean): GraphSession {
  const { session, inputs, outputs } = addon.create(modelPath, intraOpThreads, 1, allowSpinning)
  const inputIndex = new Map(inputs.map((n, i) => [n, i]))
  const outputIndex = new Map(outputs.map((n, i) => [n, i]))
  const all = Object.fromEntries(outputs.map((n) => [n, null]))
  const index = (names: Map<string, number>, name: string, kind: string): number => {
    const i = names.get(name)
    if (i === undefined) throw new Error(`${modelPath} has no ${kind} named ${name}`)
    return i
  }
  let released = false
  return {
    inputNames: inputs,
    outputNames: outputs,
    run: (feeds, fetches) => {
      const inNames = Object.keys(feeds)
      const outNames = Object.keys(fetches ?? all)
      const given = outNames.map((n) => fetches?.[n] ?? null)
      const results = addon.run(session,
        inNames.map((n) => index(inputIndex, n, 'input')), inNames.map((n) => feeds[n].data as Data), inNames.map((n) => feeds[n].dims),
        outNames.map((n) => index(outputIndex, n, 'output')), given.map((t) => t === null ? null : t.data as Data), given.map((t) => t?.dims ?? null))
      const out: Record<string, ort.Tensor> = {}
      outNames.forEach((n, i) => {
        const r = results[i]
        out[n] = r === null ? given[i] as ort.Tensor : new ort.Tensor(TYPES.get(r[0].constructor) as 'float32', r[0] as Float32Array, r[1])
      })
      return out as Outputs
    },
    release: async () => {
      if (released) return
      released = true
      addon.release(session)
    }
  }
}
