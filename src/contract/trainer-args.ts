// The trainer's `convert` command line, built from contract/trainer-args.json: a flag the contract
// does not list cannot be emitted, and each value is checked against the flag's type.
import { Type, type Static } from '@sinclair/typebox'
import { loadChecked } from './load.ts'

const FlagSchema = Type.Object({
  flag: Type.String({ pattern: '^--[a-z][a-z-]*$' }),
  dest: Type.String(),
  type: Type.Union([
    Type.Literal('path'), Type.Literal('string'), Type.Literal('int'), Type.Literal('positive_int'), Type.Literal('float'),
    Type.Literal('positive_float'), Type.Literal('fractions'), Type.Literal('choice'), Type.Literal('switch')
  ]),
  required: Type.Optional(Type.Boolean()),
  default: Type.Optional(Type.Unknown()),
  recipe: Type.Optional(Type.String()),
  choices: Type.Optional(Type.Array(Type.String()))
})
export type TrainerFlag = Static<typeof FlagSchema>

export const TRAINER_ARGS = loadChecked('trainer-args.json', Type.Object({ command: Type.Literal('convert'), flags: Type.Array(FlagSchema) }))

/** `convert`'s options by their argparse dest; a value of undefined, null or false is left out. */
export interface ConvertArgs {
  teacher: string
  data: string
  run: string
  out?: string
  name?: string
  steps?: number
  transfer_steps?: number
  feature_dim?: number
  lr?: number
  batch?: number
  seq?: number
  seed?: number
  warmup?: number
  threads?: number
  processes?: number
  checkpoint_every?: number
  log_every?: number
  eval_at?: number[]
  eval_split?: 'validation' | 'test'
  eval_sample?: number
  eval_windows?: number | null
  eval_cache?: string
  attention_only?: boolean
}

function formatValue (f: TrainerFlag, v: unknown): string {
  const bad = (): Error => new Error(`trainer flag ${f.flag} (${f.type}): cannot take ${JSON.stringify(v)}`)
  switch (f.type) {
    case 'path':
    case 'string':
      if (typeof v !== 'string' || v === '') throw bad()
      return v
    case 'int':
    case 'positive_int':
      if (!Number.isInteger(v) || (f.type === 'positive_int' && (v as number) <= 0)) throw bad()
      return String(v)
    case 'float':
    case 'positive_float':
      if (typeof v !== 'number' || !Number.isFinite(v) || (f.type === 'positive_float' && v <= 0)) throw bad()
      return String(v)
    case 'fractions':
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) throw bad()
      return v.join(',')
    case 'choice':
      if (typeof v !== 'string' || !(f.choices ?? []).includes(v)) throw bad()
      return v
    case 'switch':
      throw bad() // switches carry no value
  }
}

/** argv for `python3 -m t2r convert`: `--flag value` per option, a bare `--flag` per true switch. */
export function convertArgv (args: ConvertArgs): string[] {
  const argv: string[] = [TRAINER_ARGS.command]
  for (const [dest, value] of Object.entries(args)) {
    if (value === undefined || value === null || value === false) continue
    const f = TRAINER_ARGS.flags.find((x) => x.dest === dest)
    if (f === undefined) throw new Error(`trainer flag for ${dest} is not in contract/trainer-args.json`)
    if (f.type === 'switch') {
      if (value !== true) throw new Error(`trainer flag ${f.flag} is a switch: true or false, not ${JSON.stringify(value)}`)
      argv.push(f.flag)
    } else {
      argv.push(f.flag, formatValue(f, value))
    }
  }
  return argv
}
