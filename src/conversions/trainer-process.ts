// Runs the Python trainer as a subprocess and turns its JSON-lines progress into events. The last
// lines of stderr are kept: a crash reports them.
import { spawn, type ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

export const TRAINER_DIR = fileURLToPath(new URL('../../trainer', import.meta.url))

export interface TrainerEvent { event: string, [key: string]: unknown }

export class TrainerProcess extends EventEmitter {
  private readonly child: ChildProcess
  private readonly stderrTail: string[] = []
  readonly done: Promise<{ code: number | null, signal: NodeJS.Signals | null, stderr: string }>

  constructor (python: string, args: string[]) {
    super()
    this.child = spawn(python, ['-m', 't2r', ...args], {
      cwd: TRAINER_DIR,
      env: { ...process.env, PYTHONPATH: TRAINER_DIR, PYTHONUNBUFFERED: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: false
    })
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      try {
        this.emit('progress', JSON.parse(line) as TrainerEvent)
      } catch {
        this.keep(line)
      }
    })
    createInterface({ input: this.child.stderr! }).on('line', (line) => { this.keep(line) })
    this.done = new Promise((resolve) => {
      this.child.on('error', (err) => { this.keep(`failed to start ${python}: ${err.message}`) })
      this.child.on('close', (code, signal) => { resolve({ code, signal, stderr: this.stderrTail.join('\n') }) })
    })
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
