// What the HTTP routes need from conversion jobs, whoever keeps and runs them: the server itself
// (ConversionService: SQLite, one trainer subprocess here) or a BullMQ queue on Redis served by
// `t2r worker` processes (QueuedConversions). REDIS_URL picks the second (src/conversions/create.ts).
import type { TrainerEvent } from '../contract/schemas.ts'
import type { ConversionRequest } from './preparer.ts'
import type { Job, JobStatus } from './job-store.ts'

/** A job's status changed (the whole job), or its trainer reported progress. */
export type JobEvent = { type: 'status', job: Job } | ({ type: 'progress' } & TrainerEvent)

export const FINAL_STATUSES: ReadonlySet<JobStatus> = new Set(['succeeded', 'failed', 'cancelled'])

export interface ConversionJobs {
  list (): Promise<Job[]>
  /** Throws 404 naming `id`. */
  get (id: string): Promise<Job>
  /** Validates, prepares the job's data and queues it. Throws domain errors naming the field. */
  submit (req: ConversionRequest): Promise<Job>
  /** Cancels a queued or running job and answers it cancelled; 409 for a finished one. */
  cancel (id: string): Promise<Job>
  /** Calls `listener` with the job's events from the moment it resolves; returns the unsubscribe. */
  watch (id: string, listener: (e: JobEvent) => void): Promise<() => void>
  /** The models are loaded: begin running (or relaying) jobs. */
  start (): void
  close (): Promise<void>
}
