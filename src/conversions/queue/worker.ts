// `t2r worker`'s job loop: takes one queued conversion at a time from BullMQ and runs it through
// runner.ts, exactly as the one-process server does, writing progress to the job's Redis record
// and events channel. A cancel request for its job stops the trainer. On shutdown the job goes
// back to the queue; when a worker dies (kill -9) its lock expires, BullMQ's stalled-job check
// puts the job back, and the next worker's trainer resumes from the run checkpoint in the shared
// conversions folder.
import { rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { DelayedError, Worker, type Job as BullJob } from 'bullmq'
import type { FastifyBaseLogger } from 'fastify'
import { Redis } from 'ioredis'
import type { TrainerEvent } from '../../contract/schemas.ts'
import type { Job } from '../job-store.ts'
import { FINAL_STATUSES } from '../jobs.ts'
import { progressFields, runJob, type RunOutcome } from '../runner.ts'
import type { TrainerProcess } from '../trainer-process.ts'
import type { QueuedJobData } from './queued-service.ts'
import { CANCEL_CHANNEL, JobRecords, PUBLISHED_CHANNEL, QUEUE_NAME } from './records.ts'
import type { WorkerMetrics } from './worker-metrics.ts'

export interface WorkerOptions {
  redisUrl: string
  modelsDir: string
  /** The conversions folder shared with the replicas (job data, run checkpoints, staging). */
  conversionsDir: string
  pythonBin: string
  threads: number
  /** A dead worker's job is back in the queue within about twice this. */
  lockMs: number
  /** Workers that may die running a job before it is failed. */
  maxStalls: number
  log: FastifyBaseLogger
  metrics: WorkerMetrics
}

export class ConversionWorker {
  private readonly redis: Redis
  private readonly subscriber: Redis
  private readonly records: JobRecords
  private readonly worker: Worker<QueuedJobData>
  private readonly root: string
  private current: { id: string, proc: TrainerProcess | null, cancelled: boolean } | null = null
  private closing = false

  constructor (private readonly o: WorkerOptions) {
    this.root = resolve(o.conversionsDir)
    this.redis = new Redis(o.redisUrl)
    this.records = new JobRecords(this.redis)
    this.subscriber = this.redis.duplicate()
    this.subscriber.on('message', (_channel: string, id: string) => { this.cancelRequested(id) })
    // ioredis reconnects by itself; without a listener each failed attempt would be an unhandled error.
    for (const c of [this.redis, this.subscriber]) c.on('error', (err: Error) => { o.log.warn({ err: err.message }, 'redis connection error') })
    this.worker = new Worker<QueuedJobData>(QUEUE_NAME, async (job, token) => { await this.process(job, token) }, {
      // BullMQ's blocking connection must retry forever rather than fail a command.
      connection: new Redis(o.redisUrl, { maxRetriesPerRequest: null }),
      concurrency: 1,
      autorun: false,
      lockDuration: o.lockMs,
      stalledInterval: o.lockMs,
      // BullMQ always requeues a stalled job; process() counts the deaths and fails the job itself,
      // so its record says why.
      maxStalledCount: Number.MAX_SAFE_INTEGER
    })
    this.worker.on('error', (err) => { o.log.error({ err: err.message }, 'queue connection error') })
  }

  /** Subscribes to cancel requests, then takes jobs until close(). */
  async start (): Promise<void> {
    await this.subscriber.subscribe(CANCEL_CHANNEL)
    void this.worker.run()
    await this.worker.waitUntilReady()
    this.o.log.info({ queue: QUEUE_NAME }, 'worker taking conversion jobs')
  }

  /** Stops the running trainer; its job returns to the queue and resumes from its checkpoint. */
  async close (): Promise<void> {
    this.closing = true
    await this.current?.proc?.stop()
    await this.worker.close()
    this.subscriber.disconnect()
    await this.redis.quit()
  }

  private async process (bull: BullJob<QueuedJobData>, token: string | undefined): Promise<void> {
    const id = bull.data.id
    const job = await this.records.get(id)
    if (job === undefined || FINAL_STATUSES.has(job.status)) return
    const current = { id, proc: null as TrainerProcess | null, cancelled: false }
    this.current = current
    try {
      // Still "running": the worker that had it died (a stopped worker puts it back as "queued").
      if (job.status === 'running' && await this.records.countDeath(id) > this.o.maxStalls) {
        await this.finish(id, 'failed', { error: `${this.o.maxStalls + 1} workers died running this job` })
        return
      }
      current.cancelled = await this.records.cancelRequested(id)
      const outcome: RunOutcome = current.cancelled ? { status: 'cancelled' } : await this.run(job, current)
      if (outcome.status === 'interrupted') {
        // Back to the queue at once, for this worker's successor or another worker.
        await this.records.update(id, { status: 'queued' })
        await this.records.publish(id, { type: 'status', job: (await this.records.get(id))! })
        await bull.moveToDelayed(Date.now(), token)
        throw new DelayedError()
      }
      if (outcome.status === 'cancelled') rmSync(join(this.root, id), { recursive: true, force: true })
      await this.finish(id, outcome.status, outcome.status === 'cancelled' ? {} : outcome.fields)
    } finally {
      this.current = null
      this.o.metrics.running.set(0)
      this.o.metrics.step.remove({ job: id })
    }
  }

  private async run (job: Job, current: NonNullable<typeof this.current>): Promise<RunOutcome> {
    const id = job.id
    await this.records.update(id, { status: 'running', started_at: job.started_at ?? Date.now(), error: null })
    await this.records.publish(id, { type: 'status', job: (await this.records.get(id))! })
    this.o.metrics.running.set(1)
    const teacher = job.params.source_model === null ? join(this.root, id, 'source') : join(this.o.modelsDir, job.params.source_model)
    try {
      return await runJob(job, {
        root: this.root,
        modelsDir: this.o.modelsDir,
        teacher,
        pythonBin: this.o.pythonBin,
        threads: this.o.threads,
        log: this.o.log,
        started: (proc) => { current.proc = proc },
        progress: (e) => { this.progress(id, e) },
        stopReason: () => (current.cancelled ? 'cancel' : this.closing ? 'shutdown' : null),
        publish: async (name) => { await this.redis.publish(PUBLISHED_CHANNEL, name) }
      })
    } catch (err) {
      this.o.log.error({ job: id, err }, 'conversion runner failed')
      return { status: 'failed', fields: { error: (err as Error).message } }
    }
  }

  /** Not awaited: commands on one connection run in the order sent, so events keep the trainer's order. */
  private progress (id: string, e: TrainerEvent): void {
    if (e.event === 'step') this.o.metrics.step.set({ job: id }, e.step)
    const lost = (err: Error): void => { this.o.log.warn({ job: id, err: err.message }, 'progress not recorded') }
    this.records.update(id, progressFields(e)).catch(lost)
    this.records.publish(id, { type: 'progress', ...e }).catch(lost)
  }

  private cancelRequested (id: string): void {
    const c = this.current
    if (c === null || c.id !== id) return
    c.cancelled = true
    void c.proc?.stop()
  }

  private async finish (id: string, status: 'succeeded' | 'failed' | 'cancelled', fields: Partial<Job>): Promise<void> {
    const job = (await this.records.get(id))!
    const now = Date.now()
    await this.records.update(id, { ...fields, status, finished_at: now, eta_s: status === 'succeeded' ? 0 : job.eta_s })
    await this.records.releaseName(job.params.name)
    await this.records.clearActive(id)
    await this.records.publish(id, { type: 'status', job: (await this.records.get(id))! })
    this.o.metrics.finished.inc({ status })
    if (job.started_at !== null) this.o.metrics.duration.observe({ status }, (now - job.started_at) / 1000)
    this.o.log.info({ job: id, status }, 'conversion job ended')
  }
}
