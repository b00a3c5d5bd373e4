// Conversion jobs: validate, queue (SQLite), run the trainer one job at a time, then check the
// export in onnxruntime-node, move the model into models/<name> atomically and hot-load it.
import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { isAbsolute, join, normalize, resolve, sep } from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config.ts'
import { conflict, notFound, overloaded, unprocessable } from '../errors.ts'
import type { Metrics } from '../metrics.ts'
import { checkParity, parityFailure } from '../models/parity.ts'
import type { LoadedModel, ModelRegistry } from '../models/registry.ts'
import { sotuSplit, tokenizeText, writeJobData } from './corpus.ts'
import { JOB_STATUSES, JobStore, type ConversionParams, type Job } from './job-store.ts'
import { TrainerProcess, type TrainerEvent } from './trainer-process.ts'

export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

export interface ConversionRequest extends Omit<ConversionParams, 'corpus'> {
  corpus: { type: 'sotu' } | { type: 'text', text: string } | { type: 'file', path: string }
}

export class ConversionService extends EventEmitter {
  private readonly store: JobStore
  private readonly root: string
  private running: { id: string, proc: TrainerProcess | null, cancelled: boolean } | null = null
  private closed = false

  constructor (
    private readonly config: Config,
    private readonly registry: ModelRegistry,
    private readonly metrics: Metrics,
    private readonly log: FastifyBaseLogger
  ) {
    super()
    this.setMaxListeners(0)
    this.root = resolve(config.dataDir, 'conversions')
    mkdirSync(this.root, { recursive: true })
    this.store = new JobStore(join(this.root, 'jobs.sqlite'))
    // Jobs that were running when the server stopped resume from their last checkpoint.
    for (const job of this.store.withStatus('running')) this.store.update(job.id, { status: 'queued' })
    this.refreshMetrics()
  }

  list (): Job[] { return this.store.list() }

  get (id: string): Job {
    const job = this.store.get(id)
    if (job === undefined) throw notFound(`conversion ${id} not found`, 'id')
    return job
  }

  /** Validates, prepares the job's data and queues it. Throws HttpErrors naming the field. */
  async submit (req: ConversionRequest): Promise<Job> {
    const source = this.registry.get(req.source_model)
    if (source === undefined) throw notFound(`model ${req.source_model} not found`, 'source_model')
    if (source.manifest.architecture !== 'softmax') throw unprocessable(`model ${req.source_model} is ${source.manifest.architecture}; conversion needs a softmax transformer`, 'source_model')
    if (!existsSync(join(source.dir, 'checkpoint.safetensors'))) throw unprocessable(`model ${req.source_model} has no checkpoint.safetensors to train from`, 'source_model')
    if (!MODEL_NAME.test(req.name)) throw unprocessable('name must be 1-64 letters, digits, ".", "_" or "-"', 'name')
    const active = this.store.withStatus('queued', 'running').some((j) => j.params.name === req.name)
    if (this.registry.has(req.name) || existsSync(join(this.config.modelsDir, req.name)) || active) throw conflict(`model ${req.name} already exists`, 'name')
    if (this.store.withStatus('queued', 'running').length >= this.config.conversions.maxQueued) throw overloaded('conversion queue is full', 30)

    const train = await this.trainTokens(source, req.corpus)
    const needed = req.batch_size * req.sequence_length + 1
    if (train.length < needed) throw unprocessable(`corpus has ${train.length} tokens; one batch of ${req.batch_size}×${req.sequence_length} needs ${needed}`, 'corpus')
    const id = `conv_${randomUUID().replaceAll('-', '').slice(0, 20)}`
    writeJobData(join(this.root, id, 'data'), source, train, await sotuSplit(source, 'test', join(this.root, 'corpus-cache')))
    const corpus: ConversionParams['corpus'] = req.corpus.type === 'text' ? { type: 'text', bytes: Buffer.byteLength(req.corpus.text) } : req.corpus
    const job: Job = {
      id, status: 'queued', params: { ...req, corpus }, created_at: Date.now(), started_at: null, finished_at: null,
      step: 0, steps: req.steps + req.transfer_steps, loss: null, tokens_per_s: null, eta_s: null, eval_perplexity: null, teacher_perplexity: null, error: null, result: null
    }
    this.store.insert(job)
    this.changed(id)
    this.pump()
    return this.get(id)
  }

  async cancel (id: string): Promise<Job> {
    const job = this.get(id)
    if (job.status === 'queued') {
      rmSync(join(this.root, id), { recursive: true, force: true })
      this.finish(id, 'cancelled', {})
    } else if (job.status === 'running' && this.running?.id === id) {
      this.running.cancelled = true
      await this.running.proc?.stop()
    } else {
      throw conflict(`conversion ${id} is already ${job.status}`, 'id')
    }
    return this.get(id)
  }

  /** Starts queued jobs, one at a time. */
  pump (): void {
    if (this.closed || this.running !== null) return
    const next = this.store.withStatus('queued')[0]
    if (next === undefined) return
    this.running = { id: next.id, proc: null, cancelled: false }
    this.run(next).catch((err) => {
      this.log.error({ job: next.id, err }, 'conversion runner failed')
      this.finish(next.id, 'failed', { error: (err as Error).message })
    }).finally(() => {
      this.running = null
      this.pump()
    })
  }

  async close (): Promise<void> {
    this.closed = true
    // The job stays "running" in the table: the next start resumes it from its checkpoint.
    const r = this.running
    if (r !== null) await r.proc?.stop()
    this.store.close()
  }

  private async trainTokens (source: LoadedModel, corpus: ConversionRequest['corpus']): Promise<Uint16Array> {
    if (corpus.type === 'sotu') return await sotuSplit(source, 'train', join(this.root, 'corpus-cache'))
    if (corpus.type === 'text') {
      if (Buffer.byteLength(corpus.text) > this.config.conversions.maxCorpusBytes) throw unprocessable(`corpus.text exceeds ${this.config.conversions.maxCorpusBytes} bytes`, 'corpus.text')
      return await tokenizeText(source, corpus.text)
    }
    const base = resolve(this.config.dataDir, 'corpora')
    if (isAbsolute(corpus.path) || normalize(corpus.path).split(sep).includes('..')) throw unprocessable('corpus.path must be relative to the data folder\'s corpora/ and must not contain ".."', 'corpus.path')
    const path = resolve(base, corpus.path)
    if (!path.startsWith(base + sep) || !existsSync(path)) throw unprocessable(`corpus.path ${corpus.path} not found under the data folder's corpora/`, 'corpus.path')
    return await tokenizeText(source, readFileSync(path, 'utf8'))
  }

  private async run (job: Job): Promise<void> {
    const p = job.params
    const dir = join(this.root, job.id)
    const staging = join(dir, 'staging', p.name)
    rmSync(staging, { recursive: true, force: true })
    mkdirSync(join(dir, 'staging'), { recursive: true })
    const source = this.registry.get(p.source_model)
    if (source === undefined) throw new Error(`source model ${p.source_model} is no longer loaded`)
    const args = ['convert', '--teacher', source.dir, '--data', join(dir, 'data'), '--run', join(dir, 'run'),
      '--steps', String(p.steps), '--transfer-steps', String(p.transfer_steps), '--feature-dim', String(p.feature_dim),
      '--lr', String(p.learning_rate), '--batch', String(p.batch_size), '--seq', String(p.sequence_length),
      '--seed', String(p.seed), '--warmup', String(Math.max(1, Math.min(50, Math.floor(p.steps / 10)))),
      '--eval-at', '0.25,0.5,0.75,1', '--checkpoint-every', String(Math.max(1, Math.min(100, Math.floor(p.steps / 4)))),
      '--log-every', '1', '--out', staging, '--name', p.name, '--threads', String(this.config.intraOpThreads ?? 2),
      ...(p.attention_only ? ['--attention-only'] : []), ...(p.eval_windows !== null ? ['--eval-windows', String(p.eval_windows)] : [])]
    const started = Date.now()
    this.store.update(job.id, { status: 'running', started_at: job.started_at ?? started, error: null })
    this.changed(job.id)
    const proc = new TrainerProcess(this.config.conversions.pythonBin, args)
    this.running!.proc = proc
    proc.on('progress', (e: TrainerEvent) => { this.progress(job.id, e) })
    const exit = await proc.done
    if (this.running!.cancelled) {
      rmSync(dir, { recursive: true, force: true })
      this.finish(job.id, 'cancelled', {})
      return
    }
    if (this.closed) return // interrupted by shutdown: resumes at the next start
    if (exit.code !== 0) {
      this.finish(job.id, 'failed', { error: `trainer exited with ${exit.signal ?? exit.code}: ${exit.stderr.trim().split('\n').slice(-8).join('\n')}` })
      return
    }
    const parity = await checkParity(staging)
    const failure = parityFailure(parity)
    if (failure !== null) {
      this.finish(job.id, 'failed', { error: `parity check failed: ${failure}`, result: { parity } })
      return
    }
    const manifest = JSON.parse(readFileSync(join(staging, 'model.json'), 'utf8')) as { metrics: Record<string, number>, training: Record<string, number> }
    this.install(staging, p.name)
    await this.registry.load(p.name)
    rmSync(join(dir, 'run'), { recursive: true, force: true })
    const ppl = manifest.metrics.test_perplexity
    const teacher = manifest.metrics.teacher_test_perplexity
    this.finish(job.id, 'succeeded', {
      eval_perplexity: ppl,
      teacher_perplexity: teacher,
      result: { model: p.name, test_perplexity: ppl, teacher_test_perplexity: teacher, perplexity_ratio: ppl / teacher, parity, train_seconds: manifest.training.seconds, tokens: manifest.training.tokens, wall_seconds: (Date.now() - started) / 1000 }
    })
  }

  /** Moves the finished folder into models/ with a rename (copying first across file systems). */
  private install (staging: string, name: string): void {
    const target = resolve(this.config.modelsDir, name)
    if (existsSync(target)) throw new Error(`models/${name} appeared while the job ran`)
    try {
      renameSync(staging, target)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err
      const partial = resolve(this.config.modelsDir, `.${name}.partial`)
      cpSync(staging, partial, { recursive: true })
      renameSync(partial, target)
      rmSync(staging, { recursive: true, force: true })
    }
  }

  private progress (id: string, e: TrainerEvent): void {
    const fields: Partial<Job> = {}
    if (e.event === 'step') {
      fields.step = e.step as number
      fields.loss = e.loss as number
      fields.tokens_per_s = e.tokens_per_s as number
      fields.eta_s = e.eta_s as number
      this.metrics.conversionStep.set({ job: id }, e.step as number)
    } else if (e.event === 'eval' && e.model === 'teacher') {
      fields.teacher_perplexity = e.perplexity as number
    } else if (e.event === 'eval') {
      fields.eval_perplexity = e.perplexity as number
    } else if (e.event === 'resume') {
      fields.step = e.step as number
    }
    this.store.update(id, fields)
    this.emit(`job:${id}`, { type: 'progress', ...e })
  }

  private finish (id: string, status: 'succeeded' | 'failed' | 'cancelled', fields: Partial<Job>): void {
    const job = this.get(id)
    this.store.update(id, { ...fields, status, finished_at: Date.now(), eta_s: status === 'succeeded' ? 0 : job.eta_s })
    this.metrics.conversionStep.remove({ job: id })
    if (job.started_at !== null) this.metrics.conversionDuration.observe({ status }, (Date.now() - job.started_at) / 1000)
    this.changed(id)
  }

  private changed (id: string): void {
    this.refreshMetrics()
    this.emit(`job:${id}`, { type: 'status', job: this.get(id) })
  }

  private refreshMetrics (): void {
    const counts = this.store.counts()
    for (const s of JOB_STATUSES) this.metrics.conversionJobs.set({ status: s }, counts[s])
  }
}
