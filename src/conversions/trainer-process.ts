// Runs the Python trainer as a subprocess. Each stdout line that is an event of
// contract/trainer-events.schema.json is emitted as 'event'; a JSON line off the contract as
// 'invalid' (the service logs it, nothing acts on it). The last lines of stderr (and any non-JSON
// stdout) are kept: a crash reports them.
import { spawn, type ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { TrainerEvent } from '../contract/schemas.ts'
import { convertArgv, type ConvertArgs } from '../contract/trainer-args.ts'
import { trainerEventContract, type Violation } from '../contract/validate.ts'

export const TRAINER_DIR = fileURLToPath(new URL('../../trainer', import.meta.url))

export interface InvalidTrainerLine { line: string, violations: Violation[] }

export interface TrainerProcessEvents {
  event: [TrainerEvent]
  invalid: [InvalidTrainerLine]
}

export class TrainerProcess extends EventEmitter<TrainerProcessEvents> {
  private readonly child: ChildProcess
  private readonly stderrTail: string[] = []
  readonly done: Promise<{ code: number | null, signal: NodeJS.Signals | null, stderr: string }>

  constructor (python: string, args: ConvertArgs) {
    super()
    this.child = spawn(python, ['-m', 't2r', ...convertArgv(args)], {
      cwd: TRAINER_DIR,
      env: { ...process.env, PYTHONPATH: TRAINER_DIR, PYTHONUNBUFFERED: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: false
    })
    createInterface({ input: this.child.stdout! }).on('line', (line) => { this.line(line) })
    createInterface({ input: this.child.stderr! }).on('line', (line) => { this.keep(line) })
    this.done = new Promise((resolve) => {
      this.child.on('error', (err) => { this.keep(`failed to start ${python}: ${err.message}`) })
      this.child.on('close', (code, signal) => { resolve({ code, signal, stderr: this.stderrTail.join('\n') }) })
    })
  }

  private line (line: string): void {
    let json: unknown
    try {
      json = JSON.parse(line)
    } catch {
      this.keep(line)
      return
    }
    if (trainerEventContract.is(json)) this.emit('event', json)
    else this.emit('invalid', { line, violations: trainerEventContract.violations(json) })
  }

  private keep (line: string): void {
    this.stderrTail.push(line)
    if (this.stderrTail.length > 20) this.stderrTail.shift()
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop (graceMs = 5000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs)
    await this.done
    clearTimeout(timer)
  }
}
