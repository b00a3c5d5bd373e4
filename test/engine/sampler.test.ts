import t from 'tap'
import { Rng } from '../../src/engine/rng.ts'
import { applyPenalties, candidates, GREEDY, sampleToken, TokenHistory, type SamplingParams } from '../../src/engine/sampler.ts'

const logits = (): Float32Array => Float32Array.from([1, 3, 2, 0.5, -1, 2.9])
const params = (p: Partial<SamplingParams>): SamplingParams => ({ ...GREEDY, temperature: 1, ...p })

t.test('greedy picks the largest logit and reports its log-probability', async (t) => {
  const s = sampleToken(logits(), GREEDY, new TokenHistory(), new Rng(1))
  t.equal(s.id, 1)
  const z = logits().reduce((a, x) => a + Math.exp(x), 0)
  t.ok(Math.abs(s.logprob - (3 - Math.log(z))) < 1e-9)
})

t.test('the same seed draws the same tokens; another seed draws others', async (t) => {
  const draw = (seed: number): number[] => {
    const rng = new Rng(seed)
    return Array.from({ length: 40 }, () => sampleToken(logits(), params({}), new TokenHistory(), rng).id)
  }
  t.same(draw(7), draw(7))
  t.not(draw(7).join(), draw(8).join())
})

t.test('top_k keeps the k most likely, top_p the smallest set reaching p', async (t) => {
  t.same(candidates(logits(), params({ topK: 2 })).map((c) => c.id), [1, 5])
  const probs = candidates(logits(), params({}))
  const topP = candidates(logits(), params({ topP: probs[0].prob + 0.01 }))
  t.same(topP.map((c) => c.id), [1, 5])
  t.ok(Math.abs(topP.reduce((a, c) => a + c.prob, 0) - 1) < 1e-9, 'renormalised')
})

t.test('typical_p keeps the tokens whose surprise is nearest the entropy', async (t) => {
  const kept = candidates(Float32Array.from([5, 0, 0, 0, 0, 0, 0, 0]), params({ typicalP: 0.5 }))
  t.notOk(kept.some((c) => c.id === 0) && kept.length === 8, 'truncates')
  t.ok(kept.length >= 1)
})

t.test('low temperature concentrates, high temperature flattens', async (t) => {
  const cold = candidates(logits(), params({ temperature: 0.1 }))[0].prob
  const hot = candidates(logits(), params({ temperature: 5 }))[0].prob
  t.ok(cold > 0.5 && hot < 0.3, `cold ${cold}, hot ${hot}`)
})

t.test('repetition, frequency and presence penalties push seen tokens down', async (t) => {
  const history = new TokenHistory()
  history.addOutput(1)
  history.addOutput(1)
  t.equal(sampleToken(logits(), params({ temperature: 0, repetitionPenalty: 2 }), history, new Rng(1)).id, 5)
  const l = logits()
  const h = new TokenHistory()
  h.addOutput(5)
  h.addOutput(5)
  applyPenalties(l, params({ frequencyPenalty: 0.5, presencePenalty: 0.25 }), h)
  t.ok(Math.abs(l[5] - (2.9 - 2 * 0.5 - 0.25)) < 1e-6)
  t.equal(sampleToken(logits(), params({ temperature: 0, frequencyPenalty: 0.5, presencePenalty: 0.25 }), history, new Rng(1)).id, 5)
})

t.test('a log-sum-exp from the graph gives the same log-probabilities', async (t) => {
  const l = logits()
  const lse = Math.log(l.reduce((a, x) => a + Math.exp(x), 0))
  const a = sampleToken(logits(), params({ temperature: 0, topLogprobs: 2 }), new TokenHistory(), new Rng(1))
  const b = sampleToken(logits(), params({ temperature: 0, topLogprobs: 2 }), new TokenHistory(), new Rng(1), lse)
  t.ok(Math.abs(a.logprob - b.logprob) < 1e-6)
  t.same(a.top.map((x) => x.id), b.top.map((x) => x.id))
})

t.test('top logprobs list the n most likely under the model', async (t) => {
  const s = sampleToken(logits(), params({ temperature: 0, topLogprobs: 3 }), new TokenHistory(), new Rng(1))
  t.same(s.top.map((c) => c.id), [1, 5, 2])
  t.ok(s.top[0].logprob > s.top[1].logprob)
})
