// TypeScript's static view of the contract's JSON Schemas (contract/*.schema.json). The JSON files
// are what both sides validate against; these TypeBox mirrors exist to give the TypeScript types,
// and test/contract/schemas.test.ts fails unless each one serializes to its JSON file. (RecipeSchema
// has no JSON file: it checks contract/recipe.json when src/contract/recipe.ts loads it.)
import { Type, type Static } from '@sinclair/typebox'

const Dim = Type.Union([Type.Integer({ minimum: 1 }), Type.String({ minLength: 1 })])
const Perplexity = Type.Number({ minimum: 1 })
const Count = Type.Integer({ minimum: 0 })
const Positive = Type.Integer({ minimum: 1 })
const PositiveNumber = Type.Number({ exclusiveMinimum: 0 })
const Architecture = Type.Union([Type.Literal('t2r'), Type.Literal('softmax'), Type.Literal('elu')])
const SplitName = Type.Union([Type.Literal('train'), Type.Literal('validation'), Type.Literal('test')])
const Base64 = Type.String({ pattern: '^[A-Za-z0-9+/]*={0,2}$' })

export const StateTensorSchema = Type.Object({
  name: Type.String({ minLength: 1 }),
  output: Type.String({ minLength: 1 }),
  shape: Type.Array(Dim, { minItems: 1 }),
  dtype: Type.Literal('float32'),
  growing_axis: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()])
}, { additionalProperties: false })

// A weight-only quantized copy of the model `source` (trainer/t2r/quantize.py); the perplexity
// figures (scripts/onnx-perplexity.ts) are both graphs' on the same held-out tokens.
export const QuantizationSchema = Type.Object({
  bits: Type.Union([Type.Literal(4), Type.Literal(8)]),
  block_size: Positive,
  accuracy_level: Type.Union([Type.Literal(1), Type.Literal(4)]),
  method: Type.String({ minLength: 1 }),
  source: Type.String({ minLength: 1 }),
  nodes: Count,
  perplexity: Type.Optional(Perplexity),
  reference_perplexity: Type.Optional(Perplexity),
  ratio: Type.Optional(PositiveNumber),
  eval_tokens: Type.Optional(Positive),
  eval_window: Type.Optional(Positive)
}, { additionalProperties: false })

export const ManifestSchema = Type.Object({
  name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' }),
  architecture: Architecture,
  vocab_size: Type.Integer({ minimum: 2 }),
  dim: Type.Optional(Positive),
  layers: Positive,
  heads: Positive,
  kv_heads: Type.Optional(Positive),
  head_dim: Positive,
  ffn_dim: Type.Optional(Positive),
  feature_dim: Type.Union([Positive, Type.Null()]),
  max_positions: Type.Union([Positive, Type.Null()]),
  trained_positions: Type.Optional(Type.Union([Positive, Type.Null()])),
  eos_token_id: Count,
  // Special tokens of models imported from Hugging Face checkpoints (src/models/special-tokens.ts):
  // every end-of-sequence id (the first is eos_token_id), the begin-of-sequence id, and whether
  // prompts start with it. Absent, they come from generation_config.json / tokenizer_config.json.
  eos_token_ids: Type.Optional(Type.Array(Count, { minItems: 1 })),
  bos_token_id: Type.Optional(Type.Union([Count, Type.Null()])),
  add_bos_token: Type.Optional(Type.Boolean()),
  sliding_window: Type.Optional(Type.Union([Positive, Type.Null()])),
  // A softmax model's decode.onnx reads KV caches of different lengths in one batch, each
  // right-aligned in the past axis with its padding masked by position_offset (step_graph.py's
  // pad_mask): the engine batches its decoding only then (older exports decode one row a step).
  decode_padded_cache: Type.Optional(Type.Boolean()),
  // A model imported from a Hugging Face checkpoint (trainer/t2r/hf_import.py).
  source: Type.Optional(Type.Object({
    format: Type.Literal('huggingface'),
    architecture: Type.String({ minLength: 1 }),
    dtype: Type.Union([Type.Literal('float32'), Type.Literal('float16'), Type.Literal('bfloat16')])
  }, { additionalProperties: false })),
  state: Type.Array(StateTensorSchema, { minItems: 1 }),
  teacher: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  training: Type.Optional(Type.Object({
    kind: Type.Union([Type.Literal('pretrain'), Type.Literal('convert')]),
    steps: Positive,
    tokens: Positive,
    seconds: Type.Number({ minimum: 0 })
  })),
  metrics: Type.Optional(Type.Object({
    test_perplexity: Perplexity,
    test_tokens: Positive,
    eval_window: Positive,
    teacher_test_perplexity: Type.Optional(Perplexity)
  })),
  quantization: Type.Optional(QuantizationSchema),
  generation_defaults: Type.Optional(Type.Object({
    max_new_tokens: Type.Optional(Positive),
    temperature: Type.Optional(Type.Number({ minimum: 0 })),
    top_p: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
    top_k: Type.Optional(Count),
    repetition_penalty: Type.Optional(Type.Number({ exclusiveMinimum: 0 }))
  }, { additionalProperties: false }))
}, { additionalProperties: false })

export const ParitySchema = Type.Object({
  input_ids: Type.Array(Count, { minItems: 1 }),
  vocab_size: Type.Integer({ minimum: 2 }),
  logits_f32_b64: Base64,
  state_kv_f32_b64: Type.Optional(Base64),
  state_k_f32_b64: Type.Optional(Base64)
}, { additionalProperties: false })

const SplitInfo = Type.Object({
  tokens: Count,
  addresses: Type.Optional(Count),
  characters: Type.Optional(Count)
}, { additionalProperties: false })

export const CorpusMetaSchema = Type.Object({
  vocab_size: Type.Integer({ minimum: 2, maximum: 65536 }),
  eos_token_id: Count,
  bos_token_id: Type.Optional(Count),
  splits: Type.Object({
    train: Type.Optional(SplitInfo),
    validation: Type.Optional(SplitInfo),
    test: Type.Optional(SplitInfo)
  }, { additionalProperties: false })
}, { additionalProperties: false })

const ModelConfig = Type.Object({
  vocab_size: Positive,
  dim: Positive,
  layers: Positive,
  heads: Positive,
  ffn_dim: Positive,
  max_positions: Positive,
  rope_base: PositiveNumber,
  attention: Architecture,
  feature_dim: Positive,
  kv_heads: Positive,
  norm: Type.Union([Type.Literal('rms'), Type.Literal('layer')]),
  norm_eps: Type.Number({ exclusiveMinimum: 0 }),
  positions: Type.Union([Type.Literal('rope'), Type.Literal('learned')]),
  rope_scaling: Type.Union([Type.Object({
    type: Type.Union([Type.Literal('linear'), Type.Literal('llama3')]),
    factor: PositiveNumber,
    low_freq_factor: Type.Optional(PositiveNumber),
    high_freq_factor: Type.Optional(PositiveNumber),
    original_max_position_embeddings: Type.Optional(PositiveNumber)
  }, { additionalProperties: false }), Type.Null()]),
  qkv_bias: Type.Boolean(),
  o_bias: Type.Boolean(),
  mlp: Type.Union([Type.Literal('swiglu'), Type.Literal('gelu_tanh')]),
  mlp_bias: Type.Boolean(),
  tied_embeddings: Type.Boolean()
}, { additionalProperties: false })

const Windows = { tokens: Positive, windows: Positive }

export const TrainerEventSchema = Type.Union([
  Type.Object({ event: Type.Literal('start'), command: Type.Union([Type.Literal('pretrain'), Type.Literal('convert')]), parameters: Positive, config: ModelConfig }, { additionalProperties: false }),
  Type.Object({ event: Type.Literal('resume'), step: Count }, { additionalProperties: false }),
  Type.Object({
    event: Type.Literal('step'),
    step: Positive,
    steps: Positive,
    phase: Type.Union([Type.Literal('transfer'), Type.Literal('finetune')]),
    loss: Type.Number(),
    lr: Type.Number({ minimum: 0 }),
    tokens_per_s: Type.Number({ minimum: 0 }),
    eta_s: Type.Number({ minimum: 0 })
  }, { additionalProperties: false }),
  // During training, on --eval-split (a sample of it when --eval-sample is given).
  Type.Object({
    event: Type.Literal('eval'), step: Positive, finetune_step: Positive, split: SplitName, sample: Type.Boolean(),
    perplexity: Perplexity, ...Windows, train_seconds: Type.Number({ minimum: 0 })
  }, { additionalProperties: false }),
  // The teacher of a conversion, evaluated (or found in --eval-cache) before training.
  Type.Object({ event: Type.Literal('eval'), model: Type.Literal('teacher'), split: SplitName, perplexity: Perplexity, ...Windows, cached: Type.Boolean() }, { additionalProperties: false }),
  // The finished model, on the whole test split (or --eval-windows of it).
  Type.Object({ event: Type.Literal('eval'), final: Type.Literal(true), split: SplitName, perplexity: Perplexity, ...Windows }, { additionalProperties: false }),
  // `t2r evaluate`.
  Type.Object({ event: Type.Literal('eval'), checkpoint: Type.String(), split: SplitName, perplexity: Perplexity, ...Windows }, { additionalProperties: false }),
  Type.Object({ event: Type.Literal('checkpoint'), step: Positive }, { additionalProperties: false }),
  Type.Object({ event: Type.Literal('packaged'), out: Type.String(), name: Type.String() }, { additionalProperties: false }),
  // `t2r import`: a Hugging Face checkpoint made into a model folder.
  Type.Object({ event: Type.Literal('imported'), out: Type.String(), name: Type.String(), architecture: Type.String(), seconds: Type.Number({ minimum: 0 }) }, { additionalProperties: false }),
  Type.Object({ event: Type.Literal('exported'), out: Type.String() }, { additionalProperties: false })
])

export const RecipeSchema = Type.Object({
  feature_dim: Positive,
  steps: Positive,
  transfer_steps: Count,
  learning_rate: Type.Number({ exclusiveMinimum: 0 }),
  batch_size: Positive,
  sequence_length: Type.Integer({ minimum: 2 }),
  seed: Count,
  attention_only: Type.Boolean(),
  warmup: Count,
  eval_at: Type.Array(Type.Number({ exclusiveMinimum: 0, maximum: 1 }), { minItems: 1 }),
  eval_split: Type.Union([Type.Literal('validation'), Type.Literal('test')]),
  eval_sample_windows: Positive
}, { additionalProperties: false })

export type Manifest = Static<typeof ManifestSchema>
export type StateTensorSpec = Static<typeof StateTensorSchema>
export type ParityReference = Static<typeof ParitySchema>
export type CorpusMeta = Static<typeof CorpusMetaSchema>
export type TrainerEvent = Static<typeof TrainerEventSchema>
export type Recipe = Static<typeof RecipeSchema>
export type SplitName = Static<typeof SplitName>
