// Conversion jobs persist in SQLite (better-sqlite3 12), so a restart knows every job and resumes
// the interrupted ones.
import Database from 'better-sqlite3'

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled'
export const JOB_STATUSES: readonly JobStatus[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled']

export interface ConversionParams {
  /** A loaded softmax model, or (null) the Hugging Face checkpoint at source_hf_path under the imports folder. */
  source_model: string | null
  source_hf_path?: string | null
  name: string
  corpus: { type: 'sotu' } | { type: 'text', bytes: number } | { type: 'file', path: string }
  feature_dim: number
  steps: number
  transfer_steps: number
  learning_rate: number
  batch_size: number
  sequence_length: number
  seed: number
  attention_only: boolean
  eval_windows: number | null
  /** Training processes (trainer --processes); absent = one. */
  processes?: number
}

export interface Job {
  id: string
  status: JobStatus
  params: ConversionParams
  created_at: number
  started_at: number | null
  finished_at: number | null
  step: number
  steps: number
  loss: number | null
  tokens_per_s: number | null
  eta_s: number | null
  eval_perplexity: number | null
  teacher_perplexity: number | null
  error: string | null
  result: Record<string, unknown> | null
}

interface Row extends Omit<Job, 'params' | 'result'> { params: string, result: string | null }

export class JobStore {
  private readonly db: Database.Database

  constructor (path: string) {
    this.db = new Database(path)
    this.db.pragma('journal_mode = WAL')
    this.db.exec(`CREATE TABLE IF NOT EXISTS jobs (
      id TEXT PRIMARY KEY, status TEXT NOT NULL, params TEXT NOT NULL,
      created_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER,
      step INTEGER NOT NULL DEFAULT 0, steps INTEGER NOT NULL, loss REAL, tokens_per_s REAL, eta_s REAL,
      eval_perplexity REAL, teacher_perplexity REAL, error TEXT, result TEXT)`)
  }

  insert (job: Job): void {
    this.db.prepare(`INSERT INTO jobs (id, status, params, created_at, steps) VALUES (?, ?, ?, ?, ?)`)
      .run(job.id, job.status, JSON.stringify(job.params), job.created_at, job.steps)
  }

  update (id: string, fields: Partial<Omit<Job, 'id' | 'params'>>): void {
    const keys = Object.keys(fields) as Array<keyof typeof fields>
    if (keys.length === 0) return
    const values = keys.map((k) => (k === 'result' && fields.result != null ? JSON.stringify(fields.result) : fields[k] ?? null))
    this.db.prepare(`UPDATE jobs SET ${keys.map((k) => `${k} = ?`).join(', ')} WHERE id = ?`).run(...values, id)
  }

  get (id: string): Job | undefined {
    const row = this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as Row | undefined
    return row === undefined ? undefined : this.parse(row)
  }

  list (): Job[] {
    return (this.db.prepare('SELECT * FROM jobs ORDER BY created_at, rowid').all() as Row[]).map((r) => this.parse(r))
  }

  withStatus (...statuses: JobStatus[]): Job[] {
    return this.list().filter((j) => statuses.includes(j.status))
  }

  counts (): Record<JobStatus, number> {
    const out = Object.fromEntries(JOB_STATUSES.map((s) => [s, 0])) as Record<JobStatus, number>
    for (const r of this.db.prepare('SELECT status, COUNT(*) AS n FROM jobs GROUP BY status').all() as Array<{ status: JobStatus, n: number }>) out[r.status] = r.n
    return out
  }

  close (): void { this.db.close() }

  private parse (row: Row): Job {
    return { ...row, params: JSON.parse(row.params) as ConversionParams, result: row.result === null ? null : JSON.parse(row.result) as Record<string, unknown> }
  }
}
