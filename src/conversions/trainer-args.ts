// A conversion job's trainer options: the job's parameters in the trainer's terms, plus how the
// server runs every job (progress scored on a validation sample at the recipe's points, the
// teacher's figure cached across jobs). The contract turns them into argv (convertArgv).
import { RECIPE } from '../contract/recipe.ts'
import type { ConvertArgs } from '../contract/trainer-args.ts'
import type { ConversionParams } from './job-store.ts'

export interface JobPaths { teacher: string, data: string, run: string, out: string, evalCache: string }

export function jobTrainerArgs (p: ConversionParams, paths: JobPaths, threads: number): ConvertArgs {
  return {
    teacher: paths.teacher,
    data: paths.data,
    run: paths.run,
    out: paths.out,
    name: p.name,
    steps: p.steps,
    transfer_steps: p.transfer_steps,
    feature_dim: p.feature_dim,
    lr: p.learning_rate,
    batch: p.batch_size,
    seq: p.sequence_length,
    seed: p.seed,
    attention_only: p.attention_only,
    // Short jobs warm up for a tenth of their steps, checkpoint four times and report every step.
    warmup: Math.max(1, Math.min(RECIPE.warmup, Math.floor(p.steps / 10))),
    checkpoint_every: Math.max(1, Math.min(100, Math.floor(p.steps / 4))),
    log_every: 1,
    threads,
    processes: p.processes,
    eval_at: RECIPE.eval_at,
    eval_split: RECIPE.eval_split,
    eval_sample: Math.min(RECIPE.eval_sample_windows, p.eval_windows ?? Infinity),
    eval_windows: p.eval_windows,
    eval_cache: paths.evalCache
  }
}
