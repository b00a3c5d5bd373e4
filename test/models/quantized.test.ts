// Weight-quantized variants (python3 -m t2r quantize, docs/design.md §7.6) of the tiny fixtures,
// scored by scripts/onnx-perplexity.ts and served beside their fp32 source: /v1/models shows the
// measured cost, greedy text and log-probabilities stay within the tolerance the quantization
// error allows.
import { execFileSync } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import ort from 'onnxruntime-node'
import t from 'tap'
import { corpusDir, PYTHON, ROOT, t2r, tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, startServer } from '../helpers/server.ts'

// Largest |Δ log-probability| of a generated token allowed between a quantized model and its fp32
// source. Measured on these fixtures over 1,024 held-out tokens (scripts/onnx-perplexity.ts,
// max_token_logprob_diff): ≤ 0.016 at 8 bits, ≤ 0.072 at 4 bits (each block's weights move by at
// most half a step, 1/255 or 1/15 of its range, and the int8 arithmetic rounds the activations
// too). The tolerances are those with a margin of ~3×; a wrong block layout moves log-probabilities
// by whole nats (it scrambles the weights).
const TOLERANCE = { 8: 0.05, 4: 0.2 } as const
const WINDOW = 32
const WINDOWS = 4 // the fixtures' own evaluation (--seq 32 --eval-windows 4): same tokens, same figure

const root = mkdtempSync(join(tmpdir(), 't2r-quant-'))
t.teardown(() => { rmSync(root, { recursive: true, force: true }) })
for (const name of ['tiny-t2r', 'tiny-base']) cpSync(join(tinyModelsDir(), name), join(root, name), { recursive: true })
const VARIANTS = [['tiny-t2r', 8], ['tiny-t2r', 4], ['tiny-base', 8]] as const
for (const [source, bits] of VARIANTS) {
  t2r(['quantize', join(root, source), '--bits', String(bits)])
  execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'onnx-perplexity.ts'), '--model', join(root, `${source}-q${bits}`),
    '--data', corpusDir(), '--seq', String(WINDOW), '--windows', String(WINDOWS), '--batch', String(WINDOWS), '--write'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
}
const srv = await startServer({ modelsDir: root })
t.teardown(srv.close)

// One MatMul (K = 80: a padded last block) and a token embedding, quantized by the trainer;
// expected: A · dequantize(B) and dequantize(E)[ids] by the trainer's own inverse, accuracy level 1
// (float32 arithmetic: only the layout is under test). ONNX Runtime must read the blocks as written.
const ONE_OF_EACH = `
import json, sys
import numpy as np, onnx
from onnx import TensorProto, helper, numpy_helper
from t2r.quantize import dequantize_blocks, quantize_blocks, quantize_file
out = sys.argv[1]
rng = np.random.default_rng(0)
w, a, e = rng.standard_normal((80, 24)).astype(np.float32), rng.standard_normal((3, 80)).astype(np.float32), rng.standard_normal((10, 64)).astype(np.float32)
ids = [3, 7, 0]
graph = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["y"]), helper.make_node("Gather", ["e", "input_ids"], ["rows"])], "g",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [3, 80]), helper.make_tensor_value_info("input_ids", TensorProto.INT64, [3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 24]), helper.make_tensor_value_info("rows", TensorProto.FLOAT, [3, 64])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(e, "e")])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), f"{out}/m.onnx")
expected = {"a": a.ravel().tolist(), "ids": ids}
for bits in (8, 4):
    quantize_file(f"{out}/m.onnx", f"{out}/m.q{bits}.onnx", bits, 32, 1)
    expected[f"y{bits}"] = (a @ dequantize_blocks(*quantize_blocks(w, bits, 32), 80)).ravel().tolist()
    expected[f"rows{bits}"] = dequantize_blocks(*quantize_blocks(e.T, bits, 32), 64).T[ids].ravel().tolist()
json.dump(expected, open(f"{out}/expected.json", "w"))
`

t.test('ONNX Runtime reads the blocks quantize.py writes (MatMulNBits, GatherBlockQuantized; 8 and 4 bits)', async (t) => {
  const dir = mkdtempSync(join(root, 'one-of-each-'))
  execFileSync(PYTHON, ['-c', ONE_OF_EACH, dir], { env: { ...process.env, PYTHONPATH: join(ROOT, 'trainer') }, stdio: ['ignore', 'ignore', 'inherit'] })
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Record<string, number[]>
  const close = (got: Float32Array, want: number[]): boolean => got.length === want.length && got.every((v, i) => Math.abs(v - want[i]) < 1e-4)
  for (const bits of [8, 4]) {
    const session = await ort.InferenceSession.create(join(dir, `m.q${bits}.onnx`))
    const out = await session.run({ a: new ort.Tensor('float32', Float32Array.from(expected.a), [3, 80]), input_ids: new ort.Tensor('int64', BigInt64Array.from(expected.ids.map(BigInt)), [3]) })
    await session.release()
    t.ok(close(out.y.data as Float32Array, expected[`y${bits}`]), `${bits} bits: MatMulNBits equals A · dequantize(B)`)
    t.ok(close(out.rows.data as Float32Array, expected[`rows${bits}`]), `${bits} bits: GatherBlockQuantized equals dequantize(E)[ids]`)
  }
})

interface Completion { text: string, logprobs: { tokens: string[], token_logprobs: number[], top_logprobs: Array<Record<string, number>> } }

async function greedy (model: string, prompt: string): Promise<Completion> {
  const res = await postJson(`${srv.url}/v1/completions`, { model, prompt, max_tokens: 24, temperature: 0, logprobs: 2 })
  t.equal(res.status, 200)
  return (await res.json()).choices[0]
}

t.test('/v1/models shows each quantized variant with its measured perplexity beside its source\'s', async (t) => {
  const { data } = await (await fetch(`${srv.url}/v1/models`)).json() as { data: Array<{ id: string, metrics: object, quantization: Record<string, unknown> | null }> }
  const byId = new Map(data.map((m) => [m.id, m.quantization]))
  // The source's PyTorch metrics are not the quantized graph's: its figures are in `quantization`.
  t.same(data.find((m) => m.id === 'tiny-t2r-q8')?.metrics, {})
  t.same([...byId.keys()].sort(), ['tiny-base', 'tiny-base-q8', 'tiny-t2r', 'tiny-t2r-q4', 'tiny-t2r-q8'])
  t.equal(byId.get('tiny-t2r'), null, 'the fp32 source is not quantized')
  for (const [source, bits] of VARIANTS) {
    const q = byId.get(`${source}-q${bits}`) as { perplexity: number, reference_perplexity: number, ratio: number }
    t.match(q, { bits, block_size: 128, accuracy_level: 4, source, method: /MatMulNBits/, eval_tokens: WINDOW * WINDOWS, eval_window: WINDOW })
    t.ok(Math.abs(q.ratio - q.perplexity / q.reference_perplexity) < 1e-3, `${source}-q${bits}: ratio is perplexity / reference`)
    // ONNX Runtime's fp32 figure is the trainer's (PyTorch) on the same windows: the same tokens are scored.
    const trainer = JSON.parse(readFileSync(join(root, source, 'model.json'), 'utf8')).metrics.test_perplexity as number
    t.ok(Math.abs(q.reference_perplexity / trainer - 1) < 1e-3, `${source}: ONNX ${q.reference_perplexity} vs PyTorch ${trainer}`)
  }
})

for (const [source, bits] of VARIANTS) {
  t.test(`${source}-q${bits}: greedy text and log-probabilities within ${TOLERANCE[bits]} of fp32`, async (t) => {
    for (const prompt of ['The', 'We the people']) {
      const [fp32, quantized] = [await greedy(source, prompt), await greedy(`${source}-q${bits}`, prompt)]
      const a = fp32.logprobs
      const b = quantized.logprobs
      let same = 0
      while (same < a.tokens.length && a.tokens[same] === b.tokens[same]) {
        t.ok(Math.abs(a.token_logprobs[same] - b.token_logprobs[same]) <= TOLERANCE[bits], `token ${same}: ${a.token_logprobs[same]} vs ${b.token_logprobs[same]}`)
        same++
      }
      if (same < a.tokens.length) {
        // Texts may part only where fp32's two best tokens are within the tolerance of a tie.
        const [first, second] = Object.values(a.top_logprobs[same]).sort((x, y) => y - x)
        t.ok(first - (second ?? -Infinity) <= 2 * TOLERANCE[bits], `the texts part at token ${same}, a near-tie in fp32 (${first} vs ${second})`)
      } else {
        t.equal(quantized.text, fp32.text)
      }
    }
  })
}
