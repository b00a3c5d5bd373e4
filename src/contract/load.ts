// Loads a contract data file (not a schema) and checks it has the shape this code relies on.
import { type Static, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { readContract } from './files.ts'

export function loadChecked<S extends TSchema> (name: string, schema: S): Static<S> {
  const doc = readContract(name)
  const first = Value.Errors(schema, doc).First()
  if (first !== undefined) throw new Error(`contract/${name} at ${first.path || '/'}: ${first.message}`)
  return doc as Static<S>
}
