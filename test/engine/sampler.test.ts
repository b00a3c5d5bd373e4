import t from 'tap'
import { Rng } from '../../src/engine/rng.ts'
import { applyPenalties, argmax, candidates, draw, drawToken, GREEDY, SamplingError, sampleToken, TokenHistory, type SamplingParams } from '../../src/engine/sampler.ts'

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
  // p = [0.45, 0.25, 0.2, 0.1]: entropy 1.2581 nats; surprises 0.799, 1.386, 1.609, 2.303 are
  // 0.460, 0.128, 0.351, 1.045 from it, so the typical order is 1, 2, 0, 3 with cumulative mass
  // 0.25, 0.45, 0.9, 1. The most likely token is the first one typical_p drops.
  const row = (): Float32Array => Float32Array.from([0.45, 0.25, 0.2, 0.1].map(Math.log))
  const kept = (typicalP: number): Array<{ id: number, prob: number }> => candidates(row(), params({ typicalP }))
  t.same(kept(0.2).map((c) => c.id), [1])
  t.same(kept(0.4).map((c) => c.id), [1, 2])
  t.ok(Math.abs(kept(0.4)[0].prob - 0.25 / 0.45) < 1e-6 && Math.abs(kept(0.4)[1].prob - 0.2 / 0.45) < 1e-6, 'renormalised')
  t.same(kept(0.85).map((c) => c.id), [0, 1, 2])
  t.same(kept(1).map((c) => c.id), [0, 1, 2, 3])
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
  const l = Float64Array.from(logits())
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

t.test('a row with -inf logits samples the same with the graph\'s log-sum-exp as without', async (t) => {
  const r = new Rng(7)
  for (let trial = 0; trial < 500; trial++) {
    const row = Float32Array.from({ length: 1 + Math.floor(r.next() * 40) }, () => r.next() < 0.3 ? -Infinity : (r.next() - 0.5) * 20)
    const max = Math.max(...row)
    if (max === -Infinity) continue
    const lse = Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0)) + max
    for (const p of [params({ temperature: 0, topLogprobs: 3 }), params({ temperature: 0.8, topP: 0.9, topLogprobs: 1 })]) {
      const a = sampleToken(row, p, new TokenHistory(), new Rng(trial))
      const b = sampleToken(row, p, new TokenHistory(), new Rng(trial), lse)
      if (a.id !== b.id || Math.abs(a.logprob - b.logprob) > 1e-5 || a.top.map((c) => c.id).join() !== b.top.map((c) => c.id).join()) {
        t.fail(`trial ${trial}: ${JSON.stringify({ row: Array.from(row, String), a, b })}`)
        return
      }
    }
  }
  t.pass('500 rows, greedy and sampled')
})

t.test('argmax is the first index of the largest score, NaN and -inf never chosen over a number', async (t) => {
  const r = new Rng(11)
  const naive = (xs: ArrayLike<number>): number => {
    const max = Math.max(...Array.from(xs).filter((x) => !Number.isNaN(x)))
    return max === -Infinity ? 0 : Array.from(xs).indexOf(max)
  }
  for (let trial = 0; trial < 3000; trial++) {
    const n = 1 + Math.floor(r.next() * 23)
    // Few distinct values, so ties are common, at every position modulo 4.
    const row = Float64Array.from({ length: n }, () => [NaN, -Infinity, 1, 2, 2, 3][Math.floor(r.next() * 6)])
    if (argmax(row) !== naive(row)) { t.fail(`${JSON.stringify(Array.from(row, String))}: argmax ${argmax(row)}, expected ${naive(row)}`); return }
  }
  t.equal(argmax(Float32Array.of(NaN, -Infinity, NaN)), 0, 'nothing above -inf: the first id')
  t.pass('3,000 rows')
})

t.test('top logprobs list the n most likely under the model', async (t) => {
  const s = sampleToken(logits(), params({ temperature: 0, topLogprobs: 3 }), new TokenHistory(), new Rng(1))
  t.same(s.top.map((c) => c.id), [1, 5, 2])
  t.ok(s.top[0].logprob > s.top[1].logprob)
})

t.test('a tiny temperature is greedy, not a division overflow', async (t) => {
  for (const temperature of [1e-38, 5e-324, Number.MIN_VALUE, 1e-300]) {
    const s = sampleToken(logits(), params({ temperature }), new TokenHistory(), new Rng(3))
    t.equal(s.id, 1, `temperature ${temperature}`)
    t.ok(Number.isFinite(s.logprob))
    t.same(candidates(logits(), params({ temperature })), [{ id: 1, prob: 1 }])
  }
  const tie = candidates(Float32Array.from([2, 5, 5, 1]), params({ temperature: 1e-38 }))
  t.same(tie.map((c) => c.id).sort(), [1, 2], 'tied best tokens share the draw')
})

t.test('a tiny repetition penalty on huge logits leaves a usable distribution', async (t) => {
  const history = new TokenHistory()
  history.addPrompt([0, 1, 2, 3, 4, 5])
  const row = (): Float32Array => Float32Array.from([1, 3e38, 2, -3e38, -1, 3e38])
  // 3e38 / 1e-38 is a finite double, so the order survives; x / 5e-324 passes the largest double
  // for every positive x, so those scores saturate and tie.
  for (const [repetitionPenalty, best] of [[1e-38, [1, 5]], [5e-324, [0, 1, 2, 5]]] as Array<[number, number[]]>) {
    for (const temperature of [0, 1, 1e-38]) {
      const s = sampleToken(row(), params({ temperature, repetitionPenalty }), history, new Rng(5))
      t.ok(best.includes(s.id), `penalty ${repetitionPenalty}, temperature ${temperature}: id ${s.id}`)
      t.ok(Number.isFinite(s.logprob))
    }
  }
})

t.test('NaN logits are never drawn; a row with nothing drawable is a SamplingError', async (t) => {
  const row = Float32Array.from([NaN, 1, NaN, -Infinity, 0.5])
  t.equal(sampleToken(row, GREEDY, new TokenHistory(), new Rng(1)).id, 1)
  const ids = new Set(Array.from({ length: 200 }, (_, i) => sampleToken(row, params({ topLogprobs: 5 }), new TokenHistory(), new Rng(i)).id))
  t.same([...ids].sort(), [1, 4])
  t.same(sampleToken(row, params({ topLogprobs: 5 }), new TokenHistory(), new Rng(1)).top.map((c) => c.id), [1, 4], 'top lists only tokens the model gives a probability')
  for (const bad of [[NaN, NaN], [-Infinity, NaN, -Infinity], []]) {
    for (const temperature of [0, 1]) {
      t.throws(() => sampleToken(Float32Array.from(bad), params({ temperature }), new TokenHistory(), new Rng(1)), SamplingError, `[${bad.join()}] at temperature ${temperature}`)
    }
  }
})

t.test('+inf logits share the draw and get log(1/count) under the model', async (t) => {
  const row = Float32Array.from([Infinity, 1e30, Infinity, 0])
  const s = sampleToken(row, params({ topLogprobs: 4 }), new TokenHistory(), new Rng(9))
  t.ok(s.id === 0 || s.id === 2)
  t.ok(Math.abs(s.logprob - Math.log(0.5)) < 1e-12, `logprob ${s.logprob}`)
  t.same(s.top.map((c) => c.id).slice(0, 2).sort(), [0, 2])
  t.ok(s.top.every((c) => Number.isFinite(c.logprob)))
})

// Random draws from the ranges the request schemas admit (TGI and OpenAI together), with the
// boundary and denormal values that break naive arithmetic drawn often.
t.test('every admitted parameter combination samples a valid token with a finite logprob', async (t) => {
  const r = new Rng(20240601)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r.next() * xs.length)]
  const int = (lo: number, hi: number): number => lo + Math.floor(r.next() * (hi - lo + 1))
  const logUniform = (lo: number, hi: number): number => Math.exp(Math.log(lo) + r.next() * (Math.log(hi) - Math.log(lo)))
  const temperature = (): number => pick([0, 0, 1, 100, 1e-38, 5e-324, 1e-7, logUniform(1e-300, 100), logUniform(0.01, 100)])
  const unit = (): number => pick([1, 1, 1e-300, 5e-324, 1 - 1e-16, 0.5, r.next() || 1, logUniform(1e-300, 1)])
  const penalty = (): number => pick([1, 1e-38, 5e-324, 10, 0.5, logUniform(1e-300, 10)])
  const signed = (): number => pick([0, -2, 2, r.next() * 4 - 2])
  const logit = (): number => pick([NaN, Infinity, -Infinity, 3.4e38, -3.4e38, 1e-40, 0, (r.next() - 0.5) * 40, (r.next() - 0.5) * 40, (r.next() - 0.5) * 40])
  let sampled = 0
  let refused = 0
  for (let trial = 0; trial < 20000; trial++) {
    const vocab = int(1, 40)
    const row = Float32Array.from({ length: vocab }, logit)
    const p: SamplingParams = {
      temperature: temperature(),
      topK: pick([0, 1, vocab, vocab + 7, int(0, vocab)]),
      topP: unit(),
      typicalP: unit(),
      repetitionPenalty: penalty(),
      frequencyPenalty: signed(),
      presencePenalty: signed(),
      topLogprobs: int(0, vocab + 2)
    }
    const history = new TokenHistory()
    history.addPrompt(Array.from({ length: int(0, 8) }, () => int(0, vocab - 1)))
    for (let i = int(0, 8); i > 0; i--) history.addOutput(int(0, vocab - 1))
    // The graph's log-sum-exp: finite where no logit is NaN or +inf and one is above -inf.
    const max = Math.max(...row)
    const lse = Number.isFinite(max) && r.next() < 0.5 ? Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0)) + max : undefined
    const drawable = row.filter((x) => x > -Infinity).length // NaN > -Infinity is false
    const what = `trial ${trial}: ${JSON.stringify({ p, row: Array.from(row, String), lse })}`
    let s
    try {
      s = sampleToken(row, p, history, new Rng(trial), lse)
    } catch (err) {
      if (drawable === 0 && err instanceof SamplingError) { refused++; continue }
      t.fail(`${what} threw ${String(err)}`)
      break
    }
    const ok = drawable > 0 && Number.isInteger(s.id) && s.id >= 0 && s.id < vocab &&
      Number.isFinite(s.logprob) && s.logprob <= 1e-9 &&
      s.top.length === Math.min(p.topLogprobs, drawable) &&
      s.top.every((c) => Number.isInteger(c.id) && c.id >= 0 && c.id < vocab && Number.isFinite(c.logprob))
    if (!ok) { t.fail(`${what} gave ${JSON.stringify(s)}`); break }
    sampled++
  }
  t.ok(sampled > 15000 && refused > 0, `${sampled} sampled, ${refused} rows with nothing drawable refused`)
})

// drawToken (the engine's path) against the reference, draw(candidates(...)): the same id for the
// same random number on every row and parameter set, at the boundaries and at vocabulary size.
t.test('drawToken draws what the candidate list draws, on random rows and parameters', async (t) => {
  const r = new Rng(77)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r.next() * xs.length)]
  const int = (lo: number, hi: number): number => lo + Math.floor(r.next() * (hi - lo + 1))
  const logit = (): number => pick([NaN, Infinity, -Infinity, 3.4e38, -3.4e38, 0, 2, 2, (r.next() - 0.5) * 40, (r.next() - 0.5) * 8])
  let differ = 0
  let trials = 0
  for (let trial = 0; trial < 6000; trial++) {
    const vocab = trial % 50 === 0 ? 8192 : int(1, 60)
    const row = Float32Array.from({ length: vocab }, trial % 50 === 0 ? () => (r.next() - 0.5) * 30 : logit)
    if (!row.some((x) => x > -Infinity)) continue
    const p: SamplingParams = {
      ...GREEDY,
      temperature: pick([1, 0.8, 1e-38, 100, r.next() * 2 + 1e-3]),
      topK: pick([0, 0, 1, 2, vocab, vocab + 3, int(0, vocab)]),
      topP: pick([1, 1, 0.95, 0.5, 1e-300, 1 - 1e-16, r.next() || 1]),
      typicalP: pick([1, 1, 1, 0.5])
    }
    const seed = int(1, 1e9)
    const want = draw(candidates(row, p), new Rng(seed))
    const got = drawToken(row, p, new Rng(seed))
    trials++
    if (want !== got) {
      differ++
      if (differ <= 3) t.fail(`trial ${trial}: reference ${want}, drawToken ${got}: ${JSON.stringify({ p, row: vocab > 60 ? `${vocab} random` : Array.from(row, String) })}`)
    }
  }
  t.equal(differ, 0, `${trials} rows, every draw the same`)
})
