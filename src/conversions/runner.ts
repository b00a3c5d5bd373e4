// Runs one conversion job to its end: the trainer subprocess, then the parity check of the export
// in onnxruntime-node, the rename into the models folder and the publication of the model. The
// server's own runner (ConversionService) and `t2r worker` both run jobs through here, so a job
// trains the same wherever it runs.
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import type { TrainerEvent } from '../contract/schemas.ts'
import { parseManifest } from '../models/manifest.ts'
import { checkParity, parityFailure } from '../models/parity.ts'
import type { Job } from './job-store.ts'
import { jobTrainerArgs } from './trainer-args.ts'
import { TrainerProcess } from './trainer-process.ts'

export interface RunContext {
  /** The folder holding every job's folder (`<root>/<id>`: data, run checkpoints, staging). */
  root: string
  modelsDir: string
  /** The teacher's model folder. */
  teacher: string
  pythonBin: string
  threads: number
  log: FastifyBaseLogger
  /** The trainer started: cancel and shutdown stop it through this. */
  started: (proc: TrainerProcess) => void
  progress: (e: TrainerEvent) => void
  /** Why the trainer was stopped, asked once it has exited: a cancel, a shutdown, or neither. */
  stopReason: () => 'cancel' | 'shutdown' | null
  /** Makes the installed models/<name> servable (a registry load here, a message from a worker). */
  publish: (name: string) => Promise<void>
}

/** How a run ended. `interrupted`: stopped by a shutdown, the job resumes from its checkpoint. */
export type RunOutcome =
  | { status: 'succeeded' | 'failed', fields: Partial<Job> }
  | { status: 'cancelled' }
  | { status: 'interrupted' }

export async function runJob (job: Job, ctx: RunContext): Promise<RunOutcome> {
  const p = job.params
  const dir = join(ctx.root, job.id)
  const staging = join(dir, 'staging', p.name)
  rmSync(staging, { recursive: true, force: true })
  mkdirSync(join(dir, 'staging'), { recursive: true })
  const args = jobTrainerArgs(p, { teacher: ctx.teacher, data: join(dir, 'data'), run: join(dir, 'run'), out: staging, evalCache: join(ctx.root, 'eval-cache') }, ctx.threads)
  const started = Date.now()
  const proc = new TrainerProcess(ctx.pythonBin, args)
  ctx.started(proc)
  proc.on('event', ctx.progress)
  proc.on('invalid', ({ line, violations }) => { ctx.log.warn({ job: job.id, line: line.slice(0, 500), violations }, 'trainer event off contract/trainer-events.schema.json: ignored') })
  const exit = await proc.done
  const stopped = ctx.stopReason()
  if (stopped === 'cancel') {
    rmSync(dir, { recursive: true, force: true })
    return { status: 'cancelled' }
  }
  if (stopped === 'shutdown') return { status: 'interrupted' }
  if (exit.code !== 0) {
    return { status: 'failed', fields: { error: `trainer exited with ${exit.signal ?? exit.code}: ${exit.stderr.trim().split('\n').slice(-8).join('\n')}` } }
  }
  const parity = await checkParity(staging)
  const failure = parityFailure(parity)
  if (failure !== null) return { status: 'failed', fields: { error: `parity check failed: ${failure}`, result: { parity } } }
  const { metrics, training } = parseManifest(JSON.parse(readFileSync(join(staging, 'model.json'), 'utf8')), staging)
  if (metrics?.teacher_test_perplexity === undefined || training === undefined) throw new Error(`${staging}/model.json has no metrics or training record`)
  install(staging, ctx.modelsDir, p.name)
  await ctx.publish(p.name)
  rmSync(join(dir, 'run'), { recursive: true, force: true })
  rmSync(join(dir, 'source'), { recursive: true, force: true })
  const ppl = metrics.test_perplexity
  const teacher = metrics.teacher_test_perplexity
  return {
    status: 'succeeded',
    fields: {
      eval_perplexity: ppl,
      teacher_perplexity: teacher,
      result: { model: p.name, test_perplexity: ppl, teacher_test_perplexity: teacher, perplexity_ratio: ppl / teacher, parity, train_seconds: training.seconds, tokens: training.tokens, wall_seconds: (Date.now() - started) / 1000 }
    }
  }
}

/** The job fields a trainer event updates. */
export function progressFields (e: TrainerEvent): Partial<Job> {
  if (e.event === 'step') return { step: e.step, loss: e.loss, tokens_per_s: e.tokens_per_s, eta_s: e.eta_s }
  if (e.event === 'eval' && 'model' in e) return { teacher_perplexity: e.perplexity }
  if (e.event === 'eval') return { eval_perplexity: e.perplexity }
  if (e.event === 'resume') return { step: e.step }
  return {}
}

/** Moves the finished folder into the models folder with a rename (copying first across file systems). */
function install (staging: string, modelsDir: string, name: string): void {
  const target = resolve(modelsDir, name)
  if (existsSync(target)) throw new Error(`models/${name} appeared while the job ran`)
  try {
    renameSync(staging, target)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err
    const partial = resolve(modelsDir, `.${name}.partial`)
    cpSync(staging, partial, { recursive: true })
    renameSync(partial, target)
    rmSync(staging, { recursive: true, force: true })
  }
}
