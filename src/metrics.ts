// Prometheus metrics (prom-client). One registry per server instance so tests can run several.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

const LATENCY = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export function createMetrics () {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const r = { registers: [registry] }
  return {
    registry,
    requests: new Counter({ ...r, name: 't2r_http_requests_total', help: 'HTTP requests by route, method and status', labelNames: ['route', 'method', 'status'] }),
    requestDuration: new Histogram({ ...r, name: 't2r_http_request_duration_seconds', help: 'HTTP request duration (streams: until the stream ends)', labelNames: ['route', 'method', 'status'], buckets: LATENCY }),
    timeToFirstToken: new Histogram({ ...r, name: 't2r_time_to_first_token_seconds', help: 'Submit to first generated token', labelNames: ['model'], buckets: LATENCY }),
    interTokenLatency: new Histogram({ ...r, name: 't2r_inter_token_latency_seconds', help: 'Time between consecutive tokens of one generation', labelNames: ['model'], buckets: LATENCY }),
    queueTime: new Histogram({ ...r, name: 't2r_queue_time_seconds', help: 'Submit to first scheduled step', labelNames: ['model'], buckets: LATENCY }),
    promptTokens: new Counter({ ...r, name: 't2r_prompt_tokens_total', help: 'Prompt tokens fed', labelNames: ['model'] }),
    generatedTokens: new Counter({ ...r, name: 't2r_generated_tokens_total', help: 'Tokens generated', labelNames: ['model'] }),
    decodeBatchSize: new Histogram({ ...r, name: 't2r_decode_batch_size', help: 'Sequences per decode step', labelNames: ['model'], buckets: [1, 2, 4, 8, 16, 32, 64, 128] }),
    prefillBatchSize: new Histogram({ ...r, name: 't2r_prefill_batch_size', help: 'Sequences per prefill step (prompts fed together)', labelNames: ['model'], buckets: [1, 2, 4, 8, 16, 32, 64, 128] }),
    ortStep: new Histogram({ ...r, name: 't2r_ort_step_duration_seconds', help: 'ONNX Runtime step duration', labelNames: ['model', 'kind'], buckets: LATENCY }),
    refused: new Counter({ ...r, name: 't2r_requests_refused_total', help: 'Generations refused at admission (429), by reason: in_flight (count bound) or queue_time (waiting bound)', labelNames: ['model', 'reason'] }),
    queueWaiting: new Gauge({ ...r, name: 't2r_queue_waiting', help: 'Generations submitted that have no first token yet', labelNames: ['model'] }),
    queueOldestWait: new Gauge({ ...r, name: 't2r_queue_oldest_wait_seconds', help: 'How long the oldest generation without a first token has waited', labelNames: ['model'] }),
    queueExpectedWait: new Gauge({ ...r, name: 't2r_queue_expected_wait_seconds', help: 'Recent submit-to-first-token time, smoothed: what admission expects a new request to wait', labelNames: ['model'] }),
    activeSequences: new Gauge({ ...r, name: 't2r_active_sequences', help: 'Generations in flight', labelNames: ['model'] }),
    sessions: new Gauge({ ...r, name: 't2r_sessions', help: 'Sessions known to the store' }),
    sessionStoreUp: new Gauge({ ...r, name: 't2r_session_store_up', help: '1 while the session store (disk or Redis) is reachable, 0 while not' }),
    residentSessions: new Gauge({ ...r, name: 't2r_sessions_resident', help: 'Sessions whose state is in memory' }),
    sessionStateBytes: new Gauge({ ...r, name: 't2r_session_state_bytes', help: 'Bytes of session state held in memory' }),
    conversionJobs: new Gauge({ ...r, name: 't2r_conversion_jobs', help: 'Conversion jobs by status', labelNames: ['status'] }),
    conversionStep: new Gauge({ ...r, name: 't2r_conversion_job_step', help: 'Current step of running conversion jobs', labelNames: ['job'] }),
    conversionDuration: new Histogram({ ...r, name: 't2r_conversion_job_duration_seconds', help: 'Conversion job wall time', labelNames: ['status'], buckets: [10, 30, 60, 300, 600, 1800, 3600, 7200] })
  }
}

export type Metrics = ReturnType<typeof createMetrics>
