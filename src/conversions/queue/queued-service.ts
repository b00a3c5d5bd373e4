// Conversion jobs on a BullMQ queue (REDIS_URL set): this replica validates and prepares a job as
// the one-process service does, writes its folder under the shared conversions folder, records it
// in Redis and queues it; `t2r worker` processes run it (worker.ts). Any replica answers status,
// events and cancel for any job: records live in Redis, events arrive on one pub/sub channel. A
// model a worker publishes is loaded here as soon as its message arrives.
import { EventEmitter } from 'node:events'
import { mkdirSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Queue, type Job as BullJob } from 'bullmq'
import type { FastifyBaseLogger } from 'fastify'
import { Redis } from 'ioredis'
import type { Config } from '../../config.ts'
import { conflict, notFound, overloaded, UnavailableError } from '../../errors.ts'
import type { Metrics } from '../../metrics.ts'
import type { ModelRegistry } from '../../models/registry.ts'
import { JOB_STATUSES, type Job } from '../job-store.ts'
import { FINAL_STATUSES, type ConversionJobs, type JobEvent } from '../jobs.ts'
import { JobPreparer, newJobId, type ConversionRequest } from '../preparer.ts'
import { EVENTS_CHANNEL, JobRecords, PUBLISHED_CHANNEL, QUEUE_NAME, type ChannelMessage } from './records.ts'

/** How long DELETE waits for a worker to confirm it stopped a running job. */
const CANCEL_WAIT_MS = 30_000

export interface QueuedJobData { id: string }

export class QueuedConversions implements ConversionJobs {
  private readonly redis: Redis
  private readonly subscriber: Redis
  private readonly subscribed: Promise<unknown>
  private readonly queue: Queue<QueuedJobData>
  private readonly records: JobRecords
  private readonly root: string
  private readonly preparer: JobPreparer
  private readonly local = new EventEmitter().setMaxListeners(0)
  /** Submissions of this replica still preparing their data: they count against the queue bound. */
  private preparing = 0

  constructor (
    private readonly config: Config,
    private readonly registry: ModelRegistry,
    private readonly metrics: Metrics,
    private readonly log: FastifyBaseLogger,
    redisUrl: string
  ) {
    this.root = resolve(config.conversions.dir)
    mkdirSync(this.root, { recursive: true })
    this.preparer = new JobPreparer(config, registry, this.root)
    // Fail fast while Redis is away (a 503 now, see viaRedis) instead of retrying each command 20 times.
    this.redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
    this.records = new JobRecords(this.redis)
    this.queue = new Queue(QUEUE_NAME, { connection: this.redis })
    this.subscriber = this.redis.duplicate()
    this.subscriber.on('message', (channel: string, message: string) => { this.received(channel, message) })
    // ioredis reconnects by itself; without a listener each failed attempt would be an unhandled error.
    for (const c of [this.redis, this.subscriber]) c.on('error', (err: Error) => { this.log.warn({ err: err.message }, 'redis connection error') })
    this.subscribed = this.subscriber.subscribe(EVENTS_CHANNEL, PUBLISHED_CHANNEL)
    this.subscribed.catch((err: Error) => { this.log.error({ err: err.message }, 'conversion events: cannot subscribe') })
  }

  async list (): Promise<Job[]> { return await viaRedis(async () => await this.records.list()) }

  async get (id: string): Promise<Job> {
    const job = await viaRedis(async () => await this.records.get(id))
    if (job === undefined) throw notFound(`conversion ${id} not found`, 'id')
    return job
  }

  async submit (req: ConversionRequest): Promise<Job> { return await viaRedis(async () => await this.submitNow(req)) }

  private async submitNow (req: ConversionRequest): Promise<Job> {
    this.preparer.check(req)
    if (this.preparer.modelExists(req.name)) throw conflict(`model ${req.name} already exists`, 'name')
    // The bound is counted across replicas but not taken atomically: two replicas submitting at
    // the same instant may pass it together. The name is taken atomically (SET NX).
    const counts = await this.queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized')
    if (Object.values(counts).reduce((a, b) => a + b, 0) + this.preparing >= this.config.conversions.maxQueued) throw overloaded('conversion queue is full', 30)
    const id = newJobId()
    if (!await this.records.reserveName(req.name, id)) throw conflict(`model ${req.name} already exists`, 'name')
    this.preparing++
    let job: Job
    try {
      job = await this.preparer.prepare(id, req)
      await this.records.insert(job)
      await this.queue.add('convert', { id }, { jobId: id, removeOnComplete: true, removeOnFail: true })
    } catch (err) {
      await this.records.releaseName(req.name)
      if (await this.records.get(id) !== undefined) await this.finish(id, 'failed', { error: `could not be queued: ${(err as Error).message}` })
      rmSync(join(this.root, id), { recursive: true, force: true })
      throw err
    } finally {
      this.preparing--
    }
    await this.records.publish(id, { type: 'status', job })
    return job
  }

  async cancel (id: string): Promise<Job> { return await viaRedis(async () => await this.cancelNow(id)) }

  private async cancelNow (id: string): Promise<Job> {
    const job = await this.get(id)
    if (FINAL_STATUSES.has(job.status)) throw conflict(`conversion ${id} is already ${job.status}`, 'id')
    // A job no worker holds (waiting, or back in the queue after its worker died) is taken out of
    // the queue here. BullMQ refuses to remove a job a worker has locked: that worker stops it.
    const queued = await this.queue.getJob(id)
    if (queued === undefined || await removed(queued)) {
      rmSync(join(this.root, id), { recursive: true, force: true })
      await this.finish(id, 'cancelled', {})
      return await this.get(id)
    }
    const final = this.finalStatus(id)
    await this.records.requestCancel(id)
    return await final
  }

  async watch (id: string, listener: (e: JobEvent) => void): Promise<() => void> {
    await this.subscribed
    this.local.on(id, listener)
    return () => { this.local.off(id, listener) }
  }

  start (): void { this.refreshCounts() }

  async close (): Promise<void> {
    await this.queue.close()
    this.subscriber.disconnect()
    await this.redis.quit()
  }

  /** Resolves with the job once it has ended (or, after CANCEL_WAIT_MS, as it is then). */
  private async finalStatus (id: string): Promise<Job> {
    let stop = (): void => {}
    const ended = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, CANCEL_WAIT_MS)
      const done = (): void => { clearTimeout(timer); resolve() }
      this.watch(id, (e) => { if (e.type === 'status' && FINAL_STATUSES.has(e.job.status)) done() })
        .then(async (unwatch) => {
          stop = unwatch
          // It may have ended on its own before the watch began.
          if (FINAL_STATUSES.has((await this.get(id)).status)) done()
        })
        .catch(done)
    })
    try {
      await ended
    } finally {
      stop()
    }
    return await this.get(id)
  }

  private async finish (id: string, status: 'failed' | 'cancelled', fields: Partial<Job>): Promise<void> {
    const job = await this.get(id)
    await this.records.update(id, { ...fields, status, finished_at: Date.now() })
    await this.records.releaseName(job.params.name)
    await this.records.publish(id, { type: 'status', job: await this.get(id) })
  }

  private received (channel: string, message: string): void {
    if (channel === PUBLISHED_CHANNEL) {
      this.registry.load(message).catch((err: Error) => { this.log.error({ model: message, err: err.message }, 'published model could not be loaded') })
      return
    }
    const { id, event } = JSON.parse(message) as ChannelMessage
    this.local.emit(id, event)
    if (event.type === 'status') this.refreshCounts()
  }

  /** The jobs-by-status gauge, counted over every replica's jobs. */
  private refreshCounts (): void {
    this.records.counts().then((counts) => {
      for (const s of JOB_STATUSES) this.metrics.conversionJobs.set({ status: s }, counts[s])
    }, (err: Error) => { this.log.warn({ err: err.message }, 'conversion job counts unavailable') })
  }
}

async function removed (job: BullJob): Promise<boolean> {
  try {
    await job.remove()
    return true
  } catch {
    return false // locked by a worker
  }
}

/** Redis itself failing (not a domain answer) is a 503 for the request that needed it, never a 500. */
async function viaRedis<T> (op: () => Promise<T>): Promise<T> {
  try {
    return await op()
  } catch (err) {
    const e = err as Error
    if (e.name === 'MaxRetriesPerRequestError' || /Connection is closed|ECONNREFUSED|Stream isn't writeable/.test(e.message)) {
      throw new UnavailableError(`conversion queue unavailable: Redis did not answer (${e.message})`)
    }
    throw err
  }
}
