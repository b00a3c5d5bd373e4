// The binary, self-describing state format: used for the session files in the data folder and for
// state export/import. Layout: "T2RS" | u32 version | u32 header length | header JSON | tensors.
// The header names the model, the tokens consumed and pending, each tensor's name and shape, and a
// SHA-256. An imported state is untrusted input: decoding checks every claim of the header against
// the model and the limits the server runs under, and every tensor value, before the engine sees it.
//
// Version 2 hashes the header's claims (the header without its sha256 field, as JSON) followed by
// the tensor bytes; version 1 (still read: session files written before it) hashed the tensors only.
import { createHash } from 'node:crypto'
import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { InvalidError } from '../errors.ts'
import { stateShape, type Manifest } from '../models/manifest.ts'

const MAGIC = 'T2RS'
const VERSION = 2
const PREFIX_BYTES = 12
const MAX_HEADER_BYTES = 1024 * 1024
/** Positions stay int32 (ONNX position offsets, RoPE angles); no real session comes near. */
export const MAX_STATE_POSITION = 2 ** 31 - 1
/** The engine leaves at most the one token it sampled but has not fed yet. */
export const MAX_PENDING_TOKENS = 1

const StateHeaderSchema = Type.Object({
  model: Type.String({ minLength: 1, maxLength: 256 }),
  architecture: Type.String({ minLength: 1, maxLength: 64 }),
  position: Type.Integer({ minimum: 0 }),
  pending: Type.Array(Type.Integer({ minimum: 0 })),
  tensors: Type.Array(Type.Object({
    name: Type.String({ minLength: 1, maxLength: 256 }),
    shape: Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 16 }),
    dtype: Type.Literal('float32')
  }, { additionalProperties: false }), { maxItems: 256 }),
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  created_at: Type.Optional(Type.String({ maxLength: 64 })),
  session_id: Type.Optional(Type.String({ maxLength: 256 })),
  /** The API key name that owns the session (tenants). */
  owner: Type.Optional(Type.String({ maxLength: 256 }))
}, { additionalProperties: false })

export type StateHeader = Static<typeof StateHeaderSchema>

export interface SessionState {
  position: number
  pending: number[]
  /** Null for a session that has consumed nothing yet (the zero state). */
  tensors: Float32Array[] | null
}

/** What a state may claim, beyond what the format itself bounds. */
export interface StateLimits {
  /** Most tokens consumed (default MAX_STATE_POSITION); a softmax state's KV length equals it. */
  maxPosition?: number
  /** Most pending tokens (default MAX_PENDING_TOKENS). */
  maxPending?: number
}

/** A state that is not one this server can continue (422); the message names the offending field. */
export class StateFormatError extends InvalidError {
  constructor (message: string) {
    super(`invalid state: ${message}`, 'body')
  }
}

function digest (claims: Omit<StateHeader, 'sha256'>, body: Uint8Array): string {
  return createHash('sha256').update(JSON.stringify(claims)).update(body).digest('hex')
}

type Claims = Omit<StateHeader, 'sha256'>
type Extra = Partial<Pick<StateHeader, 'created_at' | 'session_id' | 'owner'>>

function claimsOf (manifest: Manifest, state: SessionState, extra: Extra): { claims: Claims, body: Buffer } {
  const tensors = state.tensors ?? []
  const body = Buffer.concat(tensors.map((t) => Buffer.from(t.buffer, t.byteOffset, t.byteLength)))
  const claims: Claims = {
    ...extra,
    model: manifest.name,
    architecture: manifest.architecture,
    position: state.position,
    pending: state.pending,
    tensors: tensors.map((_, i) => ({ name: manifest.state[i].name, shape: stateShape(manifest.state[i], state.position), dtype: 'float32' }))
  }
  return { claims, body }
}

function assemble (claims: Claims, sha256: string, body: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify({ ...claims, sha256 }))
  const prefix = Buffer.alloc(PREFIX_BYTES)
  prefix.write(MAGIC, 0, 'latin1')
  prefix.writeUInt32LE(VERSION, 4)
  prefix.writeUInt32LE(json.length, 8)
  return Buffer.concat([prefix, json, body])
}

export function encodeState (manifest: Manifest, state: SessionState, extra: Extra = {}): Buffer {
  const { claims, body } = claimsOf(manifest, state, extra)
  return assemble(claims, digest(claims, body), body)
}

/**
 * encodeState with the SHA-256 computed on libuv's thread pool (WebCrypto) instead of the event
 * loop: a softmax KV cache of tens of megabytes would otherwise stall every request while hashed.
 */
export async function encodeStateAsync (manifest: Manifest, state: SessionState, extra: Extra = {}): Promise<Buffer> {
  const { claims, body } = claimsOf(manifest, state, extra)
  const hashed = Buffer.concat([Buffer.from(JSON.stringify(claims)), body])
  const sha = Buffer.from(await crypto.subtle.digest('SHA-256', hashed)).toString('hex')
  return assemble(claims, sha, body)
}

/** Reads and checks the header on its own (what a listing needs); decodeState checks the rest. */
export function readHeader (buf: Buffer, limits: StateLimits = {}): { header: StateHeader, bodyOffset: number, version: number } {
  if (buf.length < PREFIX_BYTES || buf.toString('latin1', 0, 4) !== MAGIC) throw new StateFormatError('not a t2r-serve state (bad magic)')
  const version = buf.readUInt32LE(4)
  if (version !== 1 && version !== VERSION) throw new StateFormatError(`unsupported state version ${version}`)
  const len = buf.readUInt32LE(8)
  if (len > MAX_HEADER_BYTES) throw new StateFormatError(`header length ${len} exceeds the ${MAX_HEADER_BYTES}-byte limit`)
  if (PREFIX_BYTES + len > buf.length) throw new StateFormatError(`header length ${len} overruns the ${buf.length}-byte state (truncated state header)`)
  let json: unknown
  try {
    json = JSON.parse(buf.toString('utf8', PREFIX_BYTES, PREFIX_BYTES + len))
  } catch {
    throw new StateFormatError('corrupt state header (not JSON)')
  }
  if (!Value.Check(StateHeaderSchema, json)) {
    const first = Value.Errors(StateHeaderSchema, json).First()
    throw new StateFormatError(`header${(first?.path ?? '').replaceAll('/', '.')}: ${first?.message ?? 'invalid'}`)
  }
  const header = json
  const maxPosition = Math.min(limits.maxPosition ?? MAX_STATE_POSITION, MAX_STATE_POSITION)
  if (header.position > maxPosition) throw new StateFormatError(`header.position: ${header.position} tokens consumed; the limit is ${maxPosition}`)
  const maxPending = limits.maxPending ?? MAX_PENDING_TOKENS
  if (header.pending.length > maxPending) throw new StateFormatError(`header.pending: ${header.pending.length} pending tokens; a state carries at most ${maxPending}`)
  if (header.created_at !== undefined && Number.isNaN(Date.parse(header.created_at))) throw new StateFormatError('header.created_at: not a date')
  return { header, bodyOffset: PREFIX_BYTES + len, version }
}

/** Decodes and checks a state against the model that will continue it. */
export function decodeState (buf: Buffer, manifest: Manifest, limits: StateLimits = {}): { state: SessionState, header: StateHeader } {
  const { header, bodyOffset, version } = readHeader(buf, limits)
  if (header.model !== manifest.name) throw new StateFormatError(`header.model: state belongs to model ${header.model}, not ${manifest.name}`)
  if (header.architecture !== manifest.architecture) throw new StateFormatError(`header.architecture: ${header.architecture}, but ${manifest.name} is ${manifest.architecture}`)
  const body = buf.subarray(bodyOffset)
  const { sha256, ...claims } = header
  const expected = version === 1 ? createHash('sha256').update(body).digest('hex') : digest(claims, body)
  if (expected !== sha256) throw new StateFormatError('header.sha256: state header and bytes do not match their checksum')
  const outside = header.pending.find((t) => t >= manifest.vocab_size)
  if (outside !== undefined) throw new StateFormatError(`header.pending: token ${outside} outside the vocabulary [0, ${manifest.vocab_size})`)
  if (header.tensors.length === 0) {
    if (body.length !== 0 || header.position !== 0) throw new StateFormatError('header.tensors: a state without tensors must be empty and at position 0')
    return { state: { position: 0, pending: header.pending, tensors: null }, header }
  }
  if (header.tensors.length !== manifest.state.length) throw new StateFormatError(`header.tensors: expected ${manifest.state.length} state tensors, got ${header.tensors.length}`)
  const shapes = manifest.state.map((spec, i) => {
    const want = stateShape(spec, header.position)
    const got = header.tensors[i]
    if (got.name !== spec.name || JSON.stringify(got.shape) !== JSON.stringify(want)) {
      throw new StateFormatError(`header.tensors.${i}: expected ${spec.name} ${JSON.stringify(want)} at position ${header.position}, got ${got.name} ${JSON.stringify(got.shape)}`)
    }
    return want
  })
  const sizes = shapes.map((shape) => shape.reduce((a, b) => a * b, 1) * 4)
  const total = sizes.reduce((a, b) => a + b, 0)
  if (body.length !== total) throw new StateFormatError(`state has ${body.length} tensor bytes; the header's shapes need ${total}`)
  let at = 0
  const tensors = sizes.map((bytes, i) => {
    const copy = new Float32Array(bytes / 4)
    Buffer.from(copy.buffer).set(body.subarray(at, at + bytes))
    at += bytes
    const bad = copy.findIndex((x) => !Number.isFinite(x))
    if (bad >= 0) throw new StateFormatError(`tensor ${manifest.state[i].name}: value ${copy[bad]} at index ${bad}; state values must be finite`)
    return copy
  })
  return { state: { position: header.position, pending: header.pending, tensors }, header }
}

export function stateBytes (state: SessionState): number {
  return (state.tensors ?? []).reduce((n, t) => n + t.byteLength, 0)
}
