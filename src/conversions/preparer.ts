// Prepares a submitted conversion before it is queued, wherever it will run: checks the source,
// imports a Hugging Face source, tokenizes the corpus and writes the job's data folder
// (`<root>/<id>/data`), and builds the job's record.
import { randomUUID } from 'node:crypto'
import { existsSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { Config } from '../config.ts'
import { notFound, unprocessable } from '../errors.ts'
import type { LoadedModel, ModelRegistry } from '../models/registry.ts'
import { readCorpusFile } from './corpus-file.ts'
import { SotuCache, tokenize, writeJobData } from './corpus.ts'
import { importHfSource, type ConversionSource } from './hf-source.ts'
import type { ConversionParams, Job } from './job-store.ts'

export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

export interface ConversionRequest extends Omit<ConversionParams, 'corpus' | 'source_model' | 'source_hf_path'> {
  source: { type: 'model', name: string } | { type: 'hf', path: string }
  corpus: { type: 'sotu' } | { type: 'text', text: string } | { type: 'file', path: string }
}

export class JobPreparer {
  private readonly sotu: SotuCache

  constructor (private readonly config: Config, private readonly registry: ModelRegistry, private readonly root: string) {
    // The SOTU splits are cached in this server's own data folder, also when job folders are shared.
    this.sotu = new SotuCache(join(config.dataDir, 'conversions', 'corpus-cache'))
  }

  /** The checks that need no await: the source (404/422) and the name's form (422). */
  check (req: ConversionRequest): void {
    if (req.source.type === 'model') this.loadedSource(req.source.name)
    if (!MODEL_NAME.test(req.name)) throw unprocessable('name must be 1-64 letters, digits, ".", "_" or "-"', 'name')
  }

  /** Whether a model by this name is loaded here or has a folder. */
  modelExists (name: string): boolean {
    return this.registry.has(name) || existsSync(join(this.config.modelsDir, name))
  }

  /** Writes the job's folder and answers its queued record; on any failure the folder is removed. */
  async prepare (id: string, req: ConversionRequest): Promise<Job> {
    const { source: requested, ...rest } = req
    try {
      // A Hugging Face source is imported first, into the job's folder: a checkpoint the importer
      // refuses is a 422 before anything is queued.
      const source = requested.type === 'model'
        ? this.loadedSource(requested.name)
        : await importHfSource(this.config.conversions.importsDir, requested.path, join(this.root, id, 'source'), this.config.conversions.pythonBin, this.config.intraOpThreads ?? 2)
      const train = await this.trainTokens(source, req.corpus)
      const needed = req.batch_size * req.sequence_length + 1
      if (train.length < needed) throw unprocessable(`corpus has ${train.length} tokens; one batch of ${req.batch_size}×${req.sequence_length} needs ${needed}`, 'corpus')
      await writeJobData(join(this.root, id, 'data'), source, this.sotu, train)
    } catch (err) {
      rmSync(join(this.root, id), { recursive: true, force: true })
      throw err
    }
    const corpus: ConversionParams['corpus'] = req.corpus.type === 'text' ? { type: 'text', bytes: Buffer.byteLength(req.corpus.text) } : req.corpus
    const params: ConversionParams = {
      ...rest, corpus, source_model: requested.type === 'model' ? requested.name : null, source_hf_path: requested.type === 'hf' ? requested.path : null
    }
    return {
      id, status: 'queued', params, created_at: Date.now(), started_at: null, finished_at: null,
      step: 0, steps: req.steps + req.transfer_steps, loss: null, tokens_per_s: null, eta_s: null, eval_perplexity: null, teacher_perplexity: null, error: null, result: null
    }
  }

  /** A loaded model a conversion may start from; throws naming source_model otherwise. */
  loadedSource (name: string): LoadedModel {
    const source = this.registry.get(name)
    if (source === undefined) throw notFound(`model ${name} not found`, 'source_model')
    if (source.manifest.architecture !== 'softmax') throw unprocessable(`model ${name} is ${source.manifest.architecture}; conversion needs a softmax transformer`, 'source_model')
    if (!existsSync(join(source.dir, 'checkpoint.safetensors'))) throw unprocessable(`model ${name} has no checkpoint.safetensors to train from`, 'source_model')
    return source
  }

  private async trainTokens (source: ConversionSource, corpus: ConversionRequest['corpus']): Promise<Uint16Array> {
    const maxBytes = this.config.conversions.maxCorpusBytes
    if (corpus.type === 'sotu') return await this.sotu.split(source, 'train')
    if (corpus.type === 'text') {
      if (Buffer.byteLength(corpus.text) > maxBytes) throw unprocessable(`corpus.text exceeds ${maxBytes} bytes`, 'corpus.text')
      return await tokenize(source, [corpus.text])
    }
    return await tokenize(source, [await readCorpusFile(resolve(this.config.dataDir, 'corpora'), corpus.path, maxBytes)])
  }
}

/** A new job's id. */
export function newJobId (): string { return `conv_${randomUUID().replaceAll('-', '').slice(0, 20)}` }
