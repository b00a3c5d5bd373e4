// Conversion jobs: validate, queue (SQLite), run the trainer one job at a time, then check the
// export in onnxruntime-node, move the model into models/<name> atomically and hot-load it.
import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config.ts'
import type { TrainerEvent } from '../contract/schemas.ts'
import { conflict, notFound, overloaded, unprocessable } from '../errors.ts'
import type { Metrics } from '../metrics.ts'
import { parseManifest } from '../models/manifest.ts'
import { checkParity, parityFailure } from '../models/parity.ts'
import type { LoadedModel, ModelRegistry } from '../models/registry.ts'
import { readCorpusFile } from './corpus-file.ts'
import { importHfSource, type ConversionSource } from './hf-source.ts'
import { SotuCache, tokenize, writeJobData } from './corpus.ts'
import { JOB_STATUSES, JobStore, type ConversionParams, type Job } from './job-store.ts'
import { jobTrainerArgs } from './trainer-args.ts'
import { TrainerProcess } from './trainer-process.ts'

export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

export interface ConversionRequest extends Omit<ConversionParams, 'corpus' | 'source_model' | 'source_hf_path'> {
  source: { type: 'model', name: string } | { type: 'hf', path: string }
  corpus: { type: 'sotu' } | { type: 'text', text: string } | { type: 'file', path: string }
}

export class ConversionService extends EventEmitter {
  private readonly store: JobStore
  private readonly root: string
  private readonly sotu: SotuCache
  private running: { id: string, proc: TrainerProcess | null, cancelled: boolean } | null = null
  /** Names of submissions still preparing their data: they hold their name and a queue slot. */
  private readonly preparing = new Set<string>()
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
    this.sotu = new SotuCache(join(this.root, 'corpus-cache'))
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

  /** Validates, prepares the job's data and queues it. Throws domain errors naming the field. */
  async submit (req: ConversionRequest): Promise<Job> {
    const { source: requested, ...rest } = req
    if (requested.type === 'model') this.loadedSource(requested.name)
    if (!MODEL_NAME.test(req.name)) throw unprocessable('name must be 1-64 letters, digits, ".", "_" or "-"', 'name')
    // The name and the queue slot are checked and taken in one synchronous stretch, before the
    // first await: concurrent submissions cannot both pass the checks.
    const active = this.store.withStatus('queued', 'running')
    if (this.registry.has(req.name) || existsSync(join(this.config.modelsDir, req.name)) || active.some((j) => j.params.name === req.name) || this.preparing.has(req.name)) {
      throw conflict(`model ${req.name} already exists`, 'name')
    }
    if (active.length + this.preparing.size >= this.config.conversions.maxQueued) throw overloaded('conversion queue is full', 30)
    this.preparing.add(req.name)
    const id = `conv_${randomUUID().replaceAll('-', '').slice(0, 20)}`
    try {
      // A Hugging Face source is imported first, into the job's folder: a checkpoint the importer
      // refuses is a 422 before anything is queued.
      const source = requested.type === 'model'
        ? this.loadedSource(requested.name)
        : await importHfSource(this.config.conversions.importsDir, requested.path, join(this.root, id, 'source'), this.config.conversions.pythonBin, this.config.intraOpThreads ?? 2)
      const train = await this.trainTokens(source, req.corpus)
      const needed = req.batch_size * req.sequence_length + 1
      if (train.length < needed) throw unprocessable(`corpus has ${train.length} tokens; one batch of ${req.batch_size}×${req.sequence_length} needs ${needed}`, 'corpus')
      await writeJobData(join(this.root, id, 'data'), source, this.sotu, train)
      const corpus: ConversionParams['corpus'] = req.corpus.type === 'text' ? { type: 'text', bytes: Buffer.byteLength(req.corpus.text) } : req.corpus
      const params: ConversionParams = {
        ...rest, corpus, source_model: requested.type === 'model' ? requested.name : null, source_hf_path: requested.type === 'hf' ? requested.path : null
      }
      const job: Job = {
        id, status: 'queued', params, created_at: Date.now(), started_at: null, finished_at: null,
        step: 0, steps: req.steps + req.transfer_steps, loss: null, tokens_per_s: null, eta_s: null, eval_perplexity: null, teacher_perplexity: null, error: null, result: null
      }
      this.store.insert(job)
    } catch (err) {
      rmSync(join(this.root, id), { recursive: true, force: true })
      throw err
    } finally {
      this.preparing.delete(req.name)
    }
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

  /** A loaded model a conversion may start from; throws naming source_model otherwise. */
  private loadedSource (name: string): LoadedModel {
    const source = this.registry.get(name)
    if (source === undefined) throw notFound(`model ${name} not found`, 'source_model')
    if (source.manifest.architecture !== 'softmax') throw unprocessable(`model ${name} is ${source.manifest.architecture}; conversion needs a softmax transformer`, 'source_model')
    if (!existsSync(join(source.dir, 'checkpoint.safetensors'))) throw unprocessable(`model ${name} has no checkpoint.safetensors to train from`, 'source_model')
    return source
  }

  /** The teacher's folder: the loaded model's, or the job's import of its Hugging Face source. */
  private teacherDir (job: Job): string {
    if (job.params.source_model === null) return join(this.root, job.id, 'source')
    const source = this.registry.get(job.params.source_model)
    if (source === undefined) throw new Error(`source model ${job.params.source_model} is no longer loaded`)
    return source.dir
  }

  private async trainTokens (source: ConversionSource, corpus: ConversionRequest['corpus']): Promise<Uint16Array> {
    const maxBytes = this.config.conversions.maxCorpusBytes
    if (corpus.type === 'sotu') return await this.sotu.split(source, 'train')
    if (corpus.type === 'text') {
      if (Buffer.byteLength(corpus.text) > maxBytes) throw unprocessable(`corpus.text exceeds ${maxBytes} bytes`, 'corpus.text')
      return await tokenize(source, [corpus.text])
    }
    return await tokenize(source, [await readCorpusFile(resolve(this.config.dataDir, 'corpora'), corpus.path, maxBytes)])
  }

  private async run (job: Job): Promise<void> {
    const p = job.params
    const dir = join(this.root, job.id)
    const staging = join(dir, 'staging', p.name)
    rmSync(staging, { recursive: true, force: true })
    mkdirSync(join(dir, 'staging'), { recursive: true })
    const args = jobTrainerArgs(p, { teacher: this.teacherDir(job), data: join(dir, 'data'), run: join(dir, 'run'), out: staging, evalCache: join(this.root, 'eval-cache') }, this.config.intraOpThreads ?? 2)
    const started = Date.now()
    this.store.update(job.id, { status: 'running', started_at: job.started_at ?? started, error: null })
    this.changed(job.id)
    const proc = new TrainerProcess(this.config.conversions.pythonBin, args)
    this.running!.proc = proc
    proc.on('event', (e) => { this.progress(job.id, e) })
    proc.on('invalid', ({ line, violations }) => { this.log.warn({ job: job.id, line: line.slice(0, 500), violations }, 'trainer event off contract/trainer-events.schema.json: ignored') })
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
    const { metrics, training } = parseManifest(JSON.parse(readFileSync(join(staging, 'model.json'), 'utf8')), staging)
    if (metrics?.teacher_test_perplexity === undefined || training === undefined) throw new Error(`${staging}/model.json has no metrics or training record`)
    this.install(staging, p.name)
    await this.registry.load(p.name)
    rmSync(join(dir, 'run'), { recursive: true, force: true })
    rmSync(join(dir, 'source'), { recursive: true, force: true })
    const ppl = metrics.test_perplexity
    const teacher = metrics.teacher_test_perplexity
    this.finish(job.id, 'succeeded', {
      eval_perplexity: ppl,
      teacher_perplexity: teacher,
      result: { model: p.name, test_perplexity: ppl, teacher_test_perplexity: teacher, perplexity_ratio: ppl / teacher, parity, train_seconds: training.seconds, tokens: training.tokens, wall_seconds: (Date.now() - started) / 1000 }
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
      fields.step = e.step
      fields.loss = e.loss
      fields.tokens_per_s = e.tokens_per_s
      fields.eta_s = e.eta_s
      this.metrics.conversionStep.set({ job: id }, e.step)
    } else if (e.event === 'eval' && 'model' in e) {
      fields.teacher_perplexity = e.perplexity
    } else if (e.event === 'eval') {
      fields.eval_perplexity = e.perplexity
    } else if (e.event === 'resume') {
      fields.step = e.step
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
