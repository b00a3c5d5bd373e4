// Figures measured once per round for each contender, summarised as median/min/max, with ours ÷
// the peer's best configuration taken round by round (both measured in the same round, so a busy
// spell slows both).
import { median } from './llama-cpp.ts'

export interface Figure {
  name: string
  unit: string
  better: 'higher' | 'lower'
}

export interface Summary { median: number, min: number, max: number, rounds: number }

export interface FigureResult extends Figure {
  ours: Record<string, Summary & { samples: number[] }>
  peer: Record<string, Summary & { samples: number[] }>
  /** The peer configuration with the best median. */
  peerBest: string | null
  /** ours ÷ peerBest per round where both were measured: > 1 means ours is larger (faster for
   * rates, slower for times). */
  ratio: Record<string, Summary>
}

export const summarize = (xs: number[]): Summary => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), rounds: xs.length })

type Side = 'ours' | 'peer'

export class Samples {
  private readonly figures = new Map<string, Figure>()
  // figure -> side -> contender -> round -> value
  private readonly values = new Map<string, Record<Side, Map<string, Map<number, number>>>>()

  add (figure: Figure, side: Side, who: string, round: number, value: number): void {
    if (!Number.isFinite(value)) throw new Error(`${figure.name}, ${who}: measured ${value}`)
    if (!this.values.has(figure.name)) {
      this.figures.set(figure.name, figure)
      this.values.set(figure.name, { ours: new Map(), peer: new Map() })
    }
    const side_ = this.values.get(figure.name)![side]
    if (!side_.has(who)) side_.set(who, new Map())
    side_.get(who)!.set(round, value)
  }

  results (): FigureResult[] {
    return [...this.figures.values()].map((f) => {
      const v = this.values.get(f.name)!
      const summaries = (m: Map<string, Map<number, number>>): FigureResult['ours'] =>
        Object.fromEntries([...m].map(([who, rounds]) => [who, { ...summarize([...rounds.values()]), samples: [...rounds.values()] }]))
      const peer = summaries(v.peer)
      const sign = f.better === 'higher' ? 1 : -1
      const peerBest = Object.keys(peer).sort((a, b) => sign * (peer[b].median - peer[a].median))[0] ?? null
      const ratio: FigureResult['ratio'] = {}
      if (peerBest !== null) {
        const best = v.peer.get(peerBest)!
        for (const [who, rounds] of v.ours) {
          const r = [...rounds].filter(([round]) => best.has(round)).map(([round, x]) => x / best.get(round)!)
          if (r.length > 0) ratio[who] = summarize(r)
        }
      }
      return { ...f, ours: summaries(v.ours), peer, peerBest, ratio }
    })
  }
}

const num = (x: number): string => (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2))
const cell = (s: Summary): string => s.rounds > 1 ? `${num(s.median)} (${num(s.min)}–${num(s.max)})` : num(s.median)

/** One markdown row per (figure, our contender). */
export function markdown (results: FigureResult[]): string {
  const rows = ['| figure | ours | median (min–max) | llama.cpp best config | median (min–max) | ours ÷ llama.cpp, per round | all llama.cpp configs (median) |', '| --- | --- | --- | --- | --- | --- | --- |']
  for (const f of results) {
    const all = Object.entries(f.peer).map(([k, s]) => `${k}: ${num(s.median)}`).join('; ')
    const best = f.peerBest === null ? null : f.peer[f.peerBest]
    for (const [who, s] of Object.entries(f.ours)) {
      const r = f.ratio[who]
      rows.push(`| ${f.name}, ${f.unit} (${f.better} is better) | ${who} | ${cell(s)} | ${f.peerBest ?? '–'} | ${best === null ? '–' : cell(best)} | ${r === undefined ? '–' : cell(r)} | ${all} |`)
    }
  }
  return rows.join('\n')
}
