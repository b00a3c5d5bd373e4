// Conversion jobs in one process: validate, queue (SQLite), run the trainer one job at a time
// (runner.ts: trainer, parity check, install into models/<name>), then hot-load the model.
import { EventEmitter } from 'node:events'
import { mkdirSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config.ts'
import type { TrainerEvent } from '../contract/schemas.ts'
import { conflict, notFound, overloaded } from '../errors.ts'
import type { Metrics } from '../metrics.ts'
import type { ModelRegistry } from '../models/registry.ts'
import { JOB_STATUSES, JobStore, type Job } from './job-store.ts'
import type { ConversionJobs, JobEvent } from './jobs.ts'
import { JobPreparer, newJobId, type ConversionRequest } from './preparer.ts'
import { progressFields, runJob } from './runner.ts'
import type { TrainerProcess } from './trainer-process.ts'

export class ConversionService extends EventEmitter implements ConversionJobs {
  private readonly store: JobStore
  private readonly root: string
  private readonly preparer: JobPreparer
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
    this.root = resolve(config.conversions.dir)
    mkdirSync(this.root, { recursive: true })
    this.store = new JobStore(join(this.root, 'jobs.sqlite'))
    this.preparer = new JobPreparer(config, registry, this.root)
    // Jobs that were running when the server stopped resume from their last checkpoint.
    for (const job of this.store.withStatus('running')) this.store.update(job.id, { status: 'queued' })
    this.refreshMetrics()
  }

  async list (): Promise<Job[]> { return this.store.list() }

  async get (id: string): Promise<Job> { return this.job(id) }

  async submit (req: ConversionRequest): Promise<Job> {
    this.preparer.check(req)
    // The name and the queue slot are checked and taken in one synchronous stretch, before the
    // first await: concurrent submissions cannot both pass the checks.
    const active = this.store.withStatus('queued', 'running')
    if (this.preparer.modelExists(req.name) || active.some((j) => j.params.name === req.name) || this.preparing.has(req.name)) {
      throw conflict(`model ${req.name} already exists`, 'name')
    }
    if (active.length + this.preparing.size >= this.config.conversions.maxQueued) throw overloaded('conversion queue is full', 30)
    this.preparing.add(req.name)
    const id = newJobId()
    try {
      this.store.insert(await this.preparer.prepare(id, req))
    } finally {
      this.preparing.delete(req.name)
    }
    this.changed(id)
    this.pump()
    return this.job(id)
  }

  async cancel (id: string): Promise<Job> {
    const job = this.job(id)
    if (job.status === 'queued') {
      rmSync(join(this.root, id), { recursive: true, force: true })
      this.finish(id, 'cancelled', {})
    } else if (job.status === 'running' && this.running?.id === id) {
      this.running.cancelled = true
      await this.running.proc?.stop()
    } else {
      throw conflict(`conversion ${id} is already ${job.status}`, 'id')
    }
    return this.job(id)
  }

  async watch (id: string, listener: (e: JobEvent) => void): Promise<() => void> {
    this.on(`job:${id}`, listener)
    return () => { this.off(`job:${id}`, listener) }
  }

  start (): void { this.pump() }

  /** Starts queued jobs, one at a time. */
  private pump (): void {
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

  private job (id: string): Job {
    const job = this.store.get(id)
    if (job === undefined) throw notFound(`conversion ${id} not found`, 'id')
    return job
  }

  /** The teacher's folder: the loaded model's, or the job's import of its Hugging Face source. */
  private teacherDir (job: Job): string {
    if (job.params.source_model === null) return join(this.root, job.id, 'source')
    const source = this.registry.get(job.params.source_model)
    if (source === undefined) throw new Error(`source model ${job.params.source_model} is no longer loaded`)
    return source.dir
  }

  private async run (job: Job): Promise<void> {
    const running = this.running!
    this.store.update(job.id, { status: 'running', started_at: job.started_at ?? Date.now(), error: null })
    this.changed(job.id)
    const outcome = await runJob(job, {
      root: this.root,
      modelsDir: this.config.modelsDir,
      teacher: this.teacherDir(job),
      pythonBin: this.config.conversions.pythonBin,
      threads: this.config.intraOpThreads ?? 2,
      log: this.log,
      started: (proc) => { running.proc = proc },
      progress: (e) => { this.progress(job.id, e) },
      stopReason: () => (running.cancelled ? 'cancel' : this.closed ? 'shutdown' : null),
      publish: async (name) => { await this.registry.load(name) }
    })
    if (outcome.status === 'interrupted') return // resumes at the next start
    this.finish(job.id, outcome.status, outcome.status === 'cancelled' ? {} : outcome.fields)
  }

  private progress (id: string, e: TrainerEvent): void {
    if (e.event === 'step') this.metrics.conversionStep.set({ job: id }, e.step)
    this.store.update(id, progressFields(e))
    this.emit(`job:${id}`, { type: 'progress', ...e })
  }

  private finish (id: string, status: 'succeeded' | 'failed' | 'cancelled', fields: Partial<Job>): void {
    const job = this.job(id)
    this.store.update(id, { ...fields, status, finished_at: Date.now(), eta_s: status === 'succeeded' ? 0 : job.eta_s })
    this.metrics.conversionStep.remove({ job: id })
    if (job.started_at !== null) this.metrics.conversionDuration.observe({ status }, (Date.now() - job.started_at) / 1000)
    this.changed(id)
  }

  private changed (id: string): void {
    this.refreshMetrics()
    this.emit(`job:${id}`, { type: 'status', job: this.job(id) })
  }

  private refreshMetrics (): void {
    const counts = this.store.counts()
    for (const s of JOB_STATUSES) this.metrics.conversionJobs.set({ status: s }, counts[s])
  }
}
