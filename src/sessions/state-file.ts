// The binary, self-describing state format: used for the session files in the data folder and for
// state export/import. Layout: "T2RS" | u32 version | u32 header length | header JSON | tensors.
// The header names the model, the tokens consumed and pending, each tensor's name and shape, and
// the SHA-256 of the tensor bytes; import checks all of it against the model.
import { createHash } from 'node:crypto'
import { InvalidError } from '../errors.ts'
import { stateShape, type Manifest } from '../models/manifest.ts'

const MAGIC = 'T2RS'
const VERSION = 1

export interface StateHeader {
  model: string
  architecture: string
  position: number
  pending: number[]
  tensors: Array<{ name: string, shape: number[], dtype: 'float32' }>
  sha256: string
  created_at?: string
  session_id?: string
  /** The API key name that owns the session (session files in the data folder). */
  owner?: string
}

export interface SessionState {
  position: number
  pending: number[]
  /** Null for a session that has consumed nothing yet (the zero state). */
  tensors: Float32Array[] | null
}

/** A state that cannot be imported: the request's body is the problem (422). */
export class StateFormatError extends InvalidError {
  constructor (message: string) {
    super(`invalid state: ${message}`, 'body')
  }
}

export function encodeState (manifest: Manifest, state: SessionState, extra: Partial<StateHeader> = {}): Buffer {
  const tensors = state.tensors ?? []
  const body = Buffer.concat(tensors.map((t) => Buffer.from(t.buffer, t.byteOffset, t.byteLength)))
  const header: StateHeader = {
    ...extra,
    model: manifest.name,
    architecture: manifest.architecture,
    position: state.position,
    pending: state.pending,
    tensors: tensors.map((_, i) => ({ name: manifest.state[i].name, shape: stateShape(manifest.state[i], state.position), dtype: 'float32' })),
    sha256: createHash('sha256').update(body).digest('hex')
  }
  const json = Buffer.from(JSON.stringify(header))
  const prefix = Buffer.alloc(12)
  prefix.write(MAGIC, 0, 'latin1')
  prefix.writeUInt32LE(VERSION, 4)
  prefix.writeUInt32LE(json.length, 8)
  return Buffer.concat([prefix, json, body])
}

export function readHeader (buf: Buffer): { header: StateHeader, bodyOffset: number } {
  if (buf.length < 12 || buf.toString('latin1', 0, 4) !== MAGIC) throw new StateFormatError('not a t2r-serve state (bad magic)')
  const version = buf.readUInt32LE(4)
  if (version !== VERSION) throw new StateFormatError(`unsupported state version ${version}`)
  const len = buf.readUInt32LE(8)
  if (12 + len > buf.length) throw new StateFormatError('truncated state header')
  let header: StateHeader
  try {
    header = JSON.parse(buf.toString('utf8', 12, 12 + len)) as StateHeader
  } catch {
    throw new StateFormatError('corrupt state header')
  }
  if (typeof header !== 'object' || header === null || !Array.isArray(header.tensors) || !Array.isArray(header.pending) ||
      !Number.isInteger(header.position) || header.position < 0) {
    throw new StateFormatError('state header lacks model, position, pending or tensors')
  }
  return { header, bodyOffset: 12 + len }
}

/** Decodes and checks a state against the model that will continue it. */
export function decodeState (buf: Buffer, manifest: Manifest): { state: SessionState, header: StateHeader } {
  const { header, bodyOffset } = readHeader(buf)
  if (header.model !== manifest.name) throw new StateFormatError(`state belongs to model ${header.model}, not ${manifest.name}`)
  const body = buf.subarray(bodyOffset)
  if (createHash('sha256').update(body).digest('hex') !== header.sha256) throw new StateFormatError('state bytes do not match their checksum')
  if (header.pending.some((t) => !Number.isInteger(t) || t < 0 || t >= manifest.vocab_size)) throw new StateFormatError('pending token outside the vocabulary')
  if (header.tensors.length === 0) {
    if (body.length !== 0 || header.position !== 0) throw new StateFormatError('state without tensors must be empty')
    return { state: { position: 0, pending: header.pending, tensors: null }, header }
  }
  if (header.tensors.length !== manifest.state.length) throw new StateFormatError(`expected ${manifest.state.length} state tensors, got ${header.tensors.length}`)
  const tensors: Float32Array[] = []
  let at = 0
  manifest.state.forEach((spec, i) => {
    const want = stateShape(spec, header.position)
    const got = header.tensors[i]
    if (got.name !== spec.name || JSON.stringify(got.shape) !== JSON.stringify(want)) {
      throw new StateFormatError(`tensor ${i}: expected ${spec.name} ${JSON.stringify(want)}, got ${got.name} ${JSON.stringify(got.shape)}`)
    }
    const bytes = want.reduce((a, b) => a * b, 1) * 4
    if (at + bytes > body.length) throw new StateFormatError('truncated state tensors')
    const copy = new Float32Array(bytes / 4)
    Buffer.from(copy.buffer).set(body.subarray(at, at + bytes))
    tensors.push(copy)
    at += bytes
  })
  if (at !== body.length) throw new StateFormatError('trailing bytes after the state tensors')
  return { state: { position: header.position, pending: header.pending, tensors }, header }
}

export function stateBytes (state: SessionState): number {
  return (state.tensors ?? []).reduce((n, t) => n + t.byteLength, 0)
}
