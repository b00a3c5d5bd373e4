// The GPU check behind scripts/gpu-check.sh: (1) the CUDA provider loads the model, (2) the
// server's parity check (src/models/parity.ts) passes on the CUDA provider, (3) a short engine
// timing: decode steps of the graph at batch 1..256 (greedy-free: the state is fed back, the
// logits are not sampled). Run under NODE_OPTIONS=--conditions=t2r-cuda (gpu-check.sh sets it).
//   npx tsx scripts/gpu-check.ts [--model models/sotu-t2r] [--device 0] [--steps 32]
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import ort from '#onnxruntime'
import { stepFeeds } from '../src/engine/batch-state.ts'
import { createSession } from '../src/engine/ort-session.ts'
import { parseManifest, stateElements } from '../src/models/manifest.ts'
import { checkParity, parityFailure } from '../src/models/parity.ts'

const { values } = parseArgs({ options: { model: { type: 'string', default: 'models/sotu-t2r' }, device: { type: 'string', default: '0' }, steps: { type: 'string', default: '32' } } })
const dir = values.model
const steps = Number(values.steps)
const runtime = { executionProvider: 'cuda' as const, cudaDevice: Number(values.device), intraOpThreads: 1 }
const manifest = parseManifest(JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')), dir)

function fail (what: string, e: unknown): never {
  console.error(`gpu-check: ${what}: ${e instanceof Error ? e.message : String(e)}`)
  process.exit(1)
}

console.log(`1. CUDA provider, device ${runtime.cudaDevice}, ${dir}`)
const session = await createSession(join(dir, 'model.onnx'), runtime).catch((e: unknown) => fail('the CUDA provider did not load the model', e))
console.log('   loaded')

console.log('2. parity on the CUDA provider (parity.json, tolerance as for conversions)')
const report = await checkParity(dir, runtime).catch((e: unknown) => fail('parity check', e))
console.log(`   ${JSON.stringify(report)}`)
const failure = parityFailure(report)
if (failure !== null) fail('parity', failure)
console.log('   ok')

console.log(`3. decode step timing, ${steps} steps per batch size (ms per step, tokens/s)`)
for (const batch of [1, 8, 32, 64, 128, 256]) {
  let state: Float32Array[] = manifest.state.map((s) => new Float32Array(stateElements(s, 0) * batch))
  const ids = Array.from({ length: batch }, (_, r) => [r % manifest.vocab_size])
  let ms = 0
  for (let i = 0; i <= steps; i++) {
    const feeds: Record<string, ort.Tensor> = {}
    for (const [name, f] of Object.entries(stepFeeds(manifest.state, ids, Array(batch).fill(i), state))) feeds[name] = new ort.Tensor(f.type, f.data, f.dims)
    const t0 = performance.now()
    const out = await session.run(feeds)
    if (i > 0) ms += performance.now() - t0 // step 0 warms up
    state = manifest.state.map((s) => out[s.output].data as Float32Array)
  }
  const perStep = ms / steps
  console.log(`   batch ${String(batch).padStart(3)}: ${perStep.toFixed(3)} ms/step, ${Math.round(batch * 1000 / perStep)} tokens/s`)
}
await session.release()
