// Validation against the contract's JSON Schemas (contract/*.schema.json) with Ajv, the validator
// Fastify itself uses. The static types come from ./schemas.ts, proven equal to the JSON files by
// test/contract/schemas.test.ts.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import { readContract } from './files.ts'
import type { CorpusMeta, Manifest, ParityReference, TrainerEvent } from './schemas.ts'

const ajv = new Ajv({ allErrors: true, strict: true })

export interface Violation { path: string, message: string }

export class ContractValidator<T> {
  private readonly check: ValidateFunction

  constructor (readonly schema: string) {
    this.check = ajv.compile(readContract(schema) as object)
  }

  /** Every violation, each with the JSON pointer of the offending value; empty when `value` is a T. */
  violations (value: unknown): Violation[] {
    return this.check(value) ? [] : (this.check.errors ?? []).map(violation)
  }

  is (value: unknown): value is T {
    return this.check(value)
  }

  /** `value` as a T, or an Error `<what> breaks contract/<schema> at <path>: <message>`. */
  parse (value: unknown, what: string): T {
    const first = this.violations(value)[0]
    if (first !== undefined) throw new Error(`${what} breaks contract/${this.schema} at ${first.path}: ${first.message}`)
    return value as T
  }
}

/** Ajv reports a missing or unexpected property at its parent; name the property itself. */
function violation (e: ErrorObject): Violation {
  const params = e.params as { missingProperty?: string, additionalProperty?: string }
  const key = params.missingProperty ?? params.additionalProperty
  const path = key === undefined ? e.instancePath : `${e.instancePath}/${key}`
  return { path: path === '' ? '/' : path, message: e.message ?? 'invalid' }
}

export const manifestContract = new ContractValidator<Manifest>('manifest.schema.json')
export const parityContract = new ContractValidator<ParityReference>('parity.schema.json')
export const corpusMetaContract = new ContractValidator<CorpusMeta>('corpus-meta.schema.json')
export const trainerEventContract = new ContractValidator<TrainerEvent>('trainer-events.schema.json')
