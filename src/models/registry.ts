// The model registry: scans the models folder, validates each manifest, loads the tokenizer and an
// engine per model. A bad folder is reported and skipped, never fatal. Models can be (re)loaded
// while serving: conversion jobs hot-load their result.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import { threadsPerModel, type Config } from '../config.ts'
import type { Backend, StartBackend } from '../generation/backend.ts'
import type { Metrics } from '../metrics.ts'
import { compileChatTemplate, type ChatTemplate } from '../chat/template.ts'
import { loadTokenizer, type TextTokenizer } from '../tokenizer/tokenizer.ts'
import { readGenerationConfig, readTokenizerConfig } from './hf-config.ts'
import { parseManifest, type Manifest } from './manifest.ts'
import { resolveSpecialTokens, type SpecialTokens } from './special-tokens.ts'

/** The model's chat template, or why it has none (the chat route says so). */
export type ModelChat = { template: ChatTemplate } | { template: null, reason: string }

export interface LoadedModel {
  name: string
  dir: string
  manifest: Manifest
  tokenizer: TextTokenizer
  special: SpecialTokens
  chat: ModelChat
  engine: Backend
  loadedAt: number
}

export class ModelRegistry {
  private readonly models = new Map<string, LoadedModel>()
  readonly failures = new Map<string, string>()
  ready = false

  constructor (
    private readonly config: Config,
    private readonly metrics: Metrics,
    private readonly log: FastifyBaseLogger,
    /** Starts the thing that runs a model (the ONNX Runtime engine; tests may pass another). */
    private readonly startBackend: StartBackend
  ) {}

  folders (): string[] {
    const root = this.config.modelsDir
    if (!existsSync(root)) return []
    const all = readdirSync(root, { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(join(root, d.name, 'model.json')))
      .map((d) => d.name)
      .sort()
    return this.config.models.length > 0 ? all.filter((n) => this.config.models.includes(n)) : all
  }

  async loadAll (): Promise<void> {
    const names = this.folders()
    const threads = threadsPerModel(this.config, names.length)
    for (const name of names) {
      try {
        await this.load(name, threads)
      } catch (err) {
        this.failures.set(name, (err as Error).message)
        this.log.error({ model: name, err: (err as Error).message }, 'model folder skipped')
      }
    }
    this.ready = true
  }

  /** Loads (or reloads) models/<folder>. Throws with a message naming what is wrong. */
  async load (folder: string, threads = threadsPerModel(this.config, Math.max(1, this.models.size + 1))): Promise<LoadedModel> {
    const dir = resolve(this.config.modelsDir, folder)
    const where = `models/${folder}`
    let json: unknown
    try {
      json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'))
    } catch (err) {
      throw new Error(`${where}/model.json: ${(err as Error).message}`)
    }
    const manifest = parseManifest(json, where)
    if (manifest.name !== folder) throw new Error(`${where}: manifest name ${manifest.name} differs from its folder`)
    for (const file of ['model.onnx', 'tokenizer.json']) {
      if (!existsSync(join(dir, file))) throw new Error(`${where}: missing ${file}`)
    }
    const tokenizer = loadTokenizer(join(dir, 'tokenizer.json'), { vocabSize: manifest.vocab_size })
    const tokenizerConfig = readTokenizerConfig(dir, where)
    const special = resolveSpecialTokens(manifest, tokenizer, tokenizerConfig, readGenerationConfig(dir, where), where)
    const chat = this.chatOf(tokenizerConfig?.chatTemplate ?? null, special, tokenizer, where)
    const engine = await this.startBackend({ name: manifest.name, modelPath: join(dir, 'model.onnx'), manifest, tokenizer, threads })
    engine.onStep((s) => {
      this.metrics.ortStep.observe({ model: manifest.name, kind: s.kind }, s.ms / 1000)
      ;(s.kind === 'decode' ? this.metrics.decodeBatchSize : this.metrics.prefillBatchSize).observe({ model: manifest.name }, s.batch)
    })
    engine.onExit((code) => {
      // A dead worker takes its model out of service; /ready reports why.
      if (this.models.get(folder)?.engine !== engine) return
      this.models.delete(folder)
      this.failures.set(folder, `engine worker exited unexpectedly (code ${code})`)
      this.log.error({ model: manifest.name, code }, 'engine worker exited')
    })
    const previous = this.models.get(folder)
    const model: LoadedModel = { name: manifest.name, dir, manifest, tokenizer, special, chat, engine, loadedAt: Date.now() }
    this.models.set(folder, model)
    this.failures.delete(folder)
    if (previous !== undefined) await previous.engine.close()
    this.log.info({ model: manifest.name, architecture: manifest.architecture, threads, provider: this.config.executionProvider, runtime: engine.runtimeNote }, 'model loaded')
    return model
  }

  /** A template that cannot be compiled leaves the model serving completions, not chat. */
  private chatOf (source: string | null, special: SpecialTokens, tokenizer: TextTokenizer, where: string): ModelChat {
    if (source === null) return { template: null, reason: 'its tokenizer_config.json has no chat_template' }
    try {
      return { template: compileChatTemplate(source, special.templateStrings, tokenizer.specialTokens) }
    } catch (err) {
      this.log.warn({ model: where, err: (err as Error).message }, 'chat template could not be compiled')
      return { template: null, reason: `its chat template could not be compiled: ${(err as Error).message}` }
    }
  }

  get (name: string): LoadedModel | undefined { return this.models.get(name) }
  has (name: string): boolean { return this.models.has(name) }
  list (): LoadedModel[] { return [...this.models.values()] }

  /** The model a request without one gets: the configured default, else the first loaded. */
  defaultModel (): LoadedModel | undefined {
    const preferred = this.config.defaultModel
    return (preferred !== null ? this.models.get(preferred) : undefined) ?? this.list()[0]
  }

  async close (): Promise<void> {
    await Promise.all(this.list().map(async (m) => { await m.engine.close() }))
    this.models.clear()
  }
}
