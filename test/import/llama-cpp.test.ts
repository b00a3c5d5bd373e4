// Imported models against an independent implementation: llama.cpp (npm node-llama-cpp 3.21.1,
// its prebuilt CPU library) runs a GGUF file written from the Hugging Face checkpoint
// (trainer/t2r/gguf.py, llama.cpp's own conversion rules); we run the ONNX graph `t2r import`
// wrote, in onnxruntime-node. Same token ids into both (the tokenizers are not compared): the
// next-token log-probabilities after every position must agree, and so must greedy continuations.
import t from 'tap'
import { join } from 'node:path'
import { loadTokenizer } from '../../src/tokenizer/tokenizer.ts'
import { postJson, startServer } from '../helpers/server.ts'
import { SHIPPED } from '../helpers/fixtures.ts'
import { hfFixtures, VARIANTS, type Variant } from './fixtures.ts'
import { compareRows, llamaCppRun, onnxRun } from './llama-cpp.ts'

const fx = hfFixtures()
const tokenizer = loadTokenizer(join(SHIPPED, 'sotu-base', 'tokenizer.json'))
const PROMPT = await tokenizer.encode('Fellow-Citizens of the Senate and House of Representatives: the state of the Union')
const GREEDY = 24
const LOGPROB_TOLERANCE = 1e-3
// ggml's CPU GELU is a half-precision lookup table (ggml-cpu/vec.h, GGML_GELU_FP16): every GELU
// output of llama.cpp's GPT-2 is rounded to float16 on the way, which moves its log-probabilities
// by a few 1e-3 from the exact float32 GELU (measured 4.5e-3 and 4.8e-3 here; our PyTorch model
// with that rounding emulated lands within 1.0e-3 of llama.cpp). The Llama family's arithmetic is
// float32 end to end in both and agrees to about 2e-5 (7e-5 for the trained sotu-base).
const GPT2_TOLERANCE = 1e-2

const cases: Array<[Variant, string]> = [
  ['llama-gqa', 'LlamaForCausalLM, grouped-query attention (4 q heads, 2 kv), tied, F32'],
  ['llama-untied-llama3-bf16', 'LlamaForCausalLM, untied head, llama3 RoPE scaling, theta 5e5, BF16'],
  ['llama-mqa-linear-f16-sharded', 'LlamaForCausalLM, one kv head, linear RoPE scaling, F16, 3 shards'],
  ['llama-sentencepiece', 'LlamaForCausalLM with a SentencePiece-style tokenizer (llama.cpp: `llama` vocabulary)'],
  ['mistral-untied', 'MistralForCausalLM, GQA, untied'],
  ['qwen2-bias', 'Qwen2ForCausalLM, q/k/v biases, GQA, theta 1e6 (llama.cpp: qwen2 arch, NEOX RoPE)'],
  ['gpt2', 'GPT2LMHeadModel: learned positions, LayerNorm, GELU, Conv1D, fused c_attn'],
  ['gpt2-f16-sharded', 'GPT2LMHeadModel, F16, 2 shards'],
  ['sotu-base', 'the shipped teacher (trained on SOTU) exported to the HF layout and re-imported']
]
t.equal(cases.length, VARIANTS.length + 1, 'every variant is compared')

for (const [variant, what] of cases) {
  t.test(`${variant}: ${what}`, async (t) => {
    const tolerance = variant.startsWith('gpt2') ? GPT2_TOLERANCE : LOGPROB_TOLERANCE
    const ours = await onnxRun(join(fx.models, variant), PROMPT, GREEDY)
    const theirs = await llamaCppRun(fx.gguf(variant), PROMPT, GREEDY)
    const { maxDiff, minCompared } = compareRows(ours.rows, theirs.rows)
    t.ok(minCompared > 8000, `log-probabilities compared for ${minCompared}+ of 8192 tokens at each of ${PROMPT.length} positions`)
    t.ok(maxDiff <= tolerance, `max |Δ log p| ${maxDiff.toExponential(2)} ≤ ${tolerance}`)
    t.same(ours.greedy, theirs.greedy, `the same ${GREEDY} greedy tokens`)
    t.ok(new Set(ours.greedy).size > 1, 'the continuation is not one token repeated')
  })
}

t.test('served: a greedy completion from the server equals llama.cpp\'s continuation (GQA and GPT-2)', async (t) => {
  const server = await startServer({ modelsDir: fx.models, env: { T2R_MODELS: 'llama-gqa,gpt2', T2R_DEFAULT_MODEL: 'llama-gqa', T2R_CONVERSIONS: 'off' } })
  t.teardown(async () => { await server.close() })
  for (const model of ['llama-gqa', 'gpt2'] as const) {
    const res = await postJson(`${server.url}/generate`, { inputs: 'Fellow-Citizens of the Senate and House of Representatives: the state of the Union', parameters: { model, max_new_tokens: 12, details: true } })
    t.equal(res.status, 200)
    const body = await res.json() as { details: { tokens: Array<{ id: number }> } }
    const theirs = await llamaCppRun(fx.gguf(model), PROMPT, 12)
    t.same(body.details.tokens.map((x) => x.id), theirs.greedy, `${model}: the served greedy tokens are llama.cpp's`)
  }
})
