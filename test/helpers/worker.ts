// A real `t2r worker` process (bin/t2r.mjs worker), for the scale-out tests: started on a free
// metrics port, ready when that port answers (the worker has connected to the queue by then).
import { spawn } from 'node:child_process'
import { ROOT } from './fixtures.ts'
import { freePort } from './server.ts'

export interface RunningWorker {
  metricsUrl: string
  kill: (signal: NodeJS.Signals) => Promise<void>
}

export async function spawnWorker (env: Record<string, string>): Promise<RunningWorker> {
  const port = await freePort()
  const child = spawn(process.execPath, ['bin/t2r.mjs', 'worker'], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'warn', T2R_INTRA_OP_THREADS: '1', T2R_WORKER_METRICS_PORT: String(port), ...env },
    stdio: ['ignore', 'ignore', 'inherit']
  })
  let gone = false
  const exited = new Promise<void>((resolve) => child.once('exit', () => { gone = true; resolve() }))
  const metricsUrl = `http://127.0.0.1:${port}/metrics`
  for (const deadline = Date.now() + 30_000; ;) {
    if (gone) throw new Error(`t2r worker exited at start with ${child.exitCode ?? child.signalCode}`)
    try { if ((await fetch(metricsUrl)).status === 200) break } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error('t2r worker not answering on its metrics port after 30 s')
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return {
    metricsUrl,
    kill: async (signal) => {
      if (!gone) child.kill(signal)
      await exited
    }
  }
}
