// Reads the contract between the server and the trainer: the JSON files in contract/ at the
// repository root, which trainer/t2r/contract.py reads too.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export const CONTRACT_DIR = fileURLToPath(new URL('../../contract/', import.meta.url))

/** contract/<name>, parsed, without its top-level `$comment` (documentation, not data). */
export function readContract (name: string): unknown {
  const doc = JSON.parse(readFileSync(`${CONTRACT_DIR}${name}`, 'utf8')) as Record<string, unknown>
  delete doc.$comment
  return doc
}
