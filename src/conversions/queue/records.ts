// Conversion jobs' records in Redis, shared by every replica and worker: one hash per job (each
// field JSON, so a writer sets only the fields it changes), a sorted set of ids by creation time,
// a reservation per model name while a job is active, a cancel request flag, a count of workers
// that died running it, and the channels
// that carry job events, cancel requests and published models to every process.
import type { Redis } from 'ioredis'
import { JOB_STATUSES, type Job, type JobStatus } from '../job-store.ts'
import type { JobEvent } from '../jobs.ts'

export const QUEUE_NAME = 't2r-conversions'
/** Every job's events, as `{ id, event }`: each replica relays the ones its SSE clients watch. */
export const EVENTS_CHANNEL = 't2r:conversions:events'
/** A job id whose running trainer must stop: the worker running it does. */
export const CANCEL_CHANNEL = 't2r:conversions:cancel'
/** A model name just installed in the shared models folder: every replica loads it. */
export const PUBLISHED_CHANNEL = 't2r:models:published'

const jobKey = (id: string): string => `t2r:conversion:${id}`
const nameKey = (name: string): string => `t2r:conversion-name:${name}`
const cancelKey = (id: string): string => `t2r:conversion-cancel:${id}`
const deathsKey = (id: string): string => `t2r:conversion-deaths:${id}`
const IDS = 't2r:conversions'

export interface ChannelMessage { id: string, event: JobEvent }

export class JobRecords {
  constructor (private readonly redis: Redis) {}

  async insert (job: Job): Promise<void> {
    await this.redis.multi().hset(jobKey(job.id), encode(job)).zadd(IDS, job.created_at, job.id).exec()
  }

  async get (id: string): Promise<Job | undefined> {
    const h = await this.redis.hgetall(jobKey(id))
    return Object.keys(h).length === 0 ? undefined : decode(h)
  }

  async list (): Promise<Job[]> {
    const ids = await this.redis.zrange(IDS, 0, -1)
    const jobs = await Promise.all(ids.map(async (id) => await this.get(id)))
    return jobs.filter((j): j is Job => j !== undefined)
  }

  async counts (): Promise<Record<JobStatus, number>> {
    const out = Object.fromEntries(JOB_STATUSES.map((s) => [s, 0])) as Record<JobStatus, number>
    for (const j of await this.list()) out[j.status]++
    return out
  }

  async update (id: string, fields: Partial<Omit<Job, 'id'>>): Promise<void> {
    if (Object.keys(fields).length > 0) await this.redis.hset(jobKey(id), encode(fields))
  }

  /** Takes the model name for job `id`; false when an active job already holds it. */
  async reserveName (name: string, id: string): Promise<boolean> {
    return await this.redis.set(nameKey(name), id, 'NX') === 'OK'
  }

  async releaseName (name: string): Promise<void> { await this.redis.del(nameKey(name)) }

  async requestCancel (id: string): Promise<void> {
    await this.redis.multi().set(cancelKey(id), '1').publish(CANCEL_CHANNEL, id).exec()
  }

  async cancelRequested (id: string): Promise<boolean> { return await this.redis.exists(cancelKey(id)) === 1 }

  /** Counts one more worker that died running job `id`; answers the count. */
  async countDeath (id: string): Promise<number> { return await this.redis.incr(deathsKey(id)) }

  /** Drops what a job needed only while active: its cancel flag and its count of dead workers. */
  async clearActive (id: string): Promise<void> { await this.redis.del(cancelKey(id), deathsKey(id)) }

  async publish (id: string, event: JobEvent): Promise<void> {
    await this.redis.publish(EVENTS_CHANNEL, JSON.stringify({ id, event } satisfies ChannelMessage))
  }
}

function encode (fields: Partial<Job>): Record<string, string> {
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, JSON.stringify(v ?? null)]))
}

function decode (h: Record<string, string>): Job {
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k, JSON.parse(v)])) as unknown as Job
}
