// The argv a conversion job gives the trainer: only flags contract/trainer-args.json names, each
// value of its flag's type, and the real trainer's parser reads back the values that were meant.
import { execFileSync } from 'node:child_process'
import t from 'tap'
import { RECIPE } from '../../src/contract/recipe.ts'
import { convertArgv, TRAINER_ARGS, type ConvertArgs } from '../../src/contract/trainer-args.ts'
import type { ConversionParams } from '../../src/conversions/job-store.ts'
import { jobTrainerArgs } from '../../src/conversions/trainer-args.ts'
import { TRAINER_DIR } from '../../src/conversions/trainer-process.ts'

const PYTHON = process.env.T2R_PYTHON ?? '/usr/bin/python3'

const params: ConversionParams = {
  source_model: 'tiny-base',
  name: 'tiny-conv',
  corpus: { type: 'sotu' },
  feature_dim: 8,
  steps: 40,
  transfer_steps: 3,
  learning_rate: 3e-4,
  batch_size: 2,
  sequence_length: 16,
  seed: 7,
  attention_only: true,
  eval_windows: 5,
  processes: 2
}
const paths = { teacher: '/m/tiny-base', data: '/j/data', run: '/j/run', out: '/j/staging/tiny-conv', evalCache: '/c/eval-cache' }

/** What the trainer's own argparse makes of `argv`. */
function parsedByTrainer (argv: string[]): Record<string, unknown> {
  const script = 'import json, sys; from t2r.cli import build_parser; print(json.dumps(vars(build_parser().parse_args(sys.argv[1:]))))'
  return JSON.parse(execFileSync(PYTHON, ['-c', script, ...argv], { cwd: TRAINER_DIR, env: { ...process.env, PYTHONPATH: TRAINER_DIR }, encoding: 'utf8' })) as Record<string, unknown>
}

t.test('a job\'s argv uses only the contract\'s flags and the trainer reads it back', async (t) => {
  const args = jobTrainerArgs(params, paths, 1)
  const argv = convertArgv(args)
  const known = new Set(TRAINER_ARGS.flags.map((f) => f.flag))
  const flags = argv.filter((a) => a.startsWith('--'))
  t.same(flags.filter((f) => !known.has(f)), [], 'no flag outside contract/trainer-args.json')
  t.equal(new Set(flags).size, flags.length, 'no flag twice')
  const parsed = parsedByTrainer(argv)
  t.equal(parsed.command, 'convert')
  for (const [dest, value] of Object.entries(args)) t.same(parsed[dest], value ?? null, `${dest} arrives as ${JSON.stringify(value)}`)
  t.equal(parsed.eval_split, RECIPE.eval_split, 'progress is scored on the recipe\'s split')
  t.equal(parsed.eval_sample, 5, 'on a sample no larger than eval_windows')
})

t.test('without overrides the trainer\'s defaults are the recipe', async (t) => {
  const parsed = parsedByTrainer(['convert', '--teacher', 'x', '--data', 'y', '--run', 'z'])
  t.match(parsed, {
    feature_dim: RECIPE.feature_dim,
    steps: RECIPE.steps,
    transfer_steps: RECIPE.transfer_steps,
    lr: RECIPE.learning_rate,
    batch: RECIPE.batch_size,
    seq: RECIPE.sequence_length,
    seed: RECIPE.seed,
    warmup: RECIPE.warmup,
    attention_only: RECIPE.attention_only
  })
})

t.test('the builder refuses what the contract does not allow', async (t) => {
  const base: ConvertArgs = { teacher: 't', data: 'd', run: 'r' }
  t.throws(() => convertArgv({ ...base, bogus: 1 } as unknown as ConvertArgs), /bogus is not in contract\/trainer-args\.json/)
  t.throws(() => convertArgv({ ...base, steps: 0 }), /--steps \(positive_int\): cannot take 0/)
  t.throws(() => convertArgv({ ...base, steps: 1.5 }), /--steps/)
  t.throws(() => convertArgv({ ...base, eval_split: 'train' as 'test' }), /--eval-split \(choice\)/)
  t.throws(() => convertArgv({ ...base, attention_only: 'yes' as unknown as boolean }), /--attention-only is a switch/)
  t.same(convertArgv({ ...base, attention_only: false, eval_windows: null }), ['convert', '--teacher', 't', '--data', 'd', '--run', 'r'], 'false switches and nulls are left out')
})

t.test('every flag\'s dest is unique and the recipe names what it links', async (t) => {
  const dests = TRAINER_ARGS.flags.map((f) => f.dest)
  t.equal(new Set(dests).size, dests.length)
  for (const f of TRAINER_ARGS.flags) {
    if (f.recipe !== undefined) t.ok(f.recipe in RECIPE, `${f.flag}: recipe.${f.recipe} exists`)
    t.notOk(f.recipe !== undefined && f.default !== undefined, `${f.flag}: one default, not two`)
  }
})
