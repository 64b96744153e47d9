'use strict';
// The benchmark's peer: the edge hook written the plain way, in Node.js with @aws-sdk/client-sqs.
// Same behaviour as the Rust hook (functions/origin-request), so that the two cost the same work:
// marked-origin gate, configuration from the origin's x-backfill-* headers (removed), GET/HEAD
// only, 2xx only on origin-response, the key rules, per-sandbox repeat suppression (bounded),
// FIFO ids, a send budget with one quick retry, fail open, one log line and one EMF line.
// Benchmark only: never deployed.
const crypto = require('node:crypto');
const { SQSClient, SendMessageCommand } = require('@aws-sdk/client-sqs');

const MARKER = 'x-backfill-queue-url';
const PREFIX = 'x-backfill-';
const REPEAT_CAPACITY = 4096;
const FIFO_GROUPS = 32;
const DEFAULT_BUDGET_MS = 300;
const DEFAULT_WINDOW_MS = 60_000;

const clients = new Map();
const sent = new Map(); // key -> time sent; Map keeps insertion order, so the first is the oldest

const first = (headers, name) => headers?.[name]?.[0]?.value;

function duration(raw, fallback) {
  if (raw === undefined) return fallback;
  const match = /^(\d+)\s*(ms|s|m|h)$/.exec(raw.trim());
  if (!match) throw new Error(`bad duration ${JSON.stringify(raw)}`);
  return Number(match[1]) * { ms: 1, s: 1e3, m: 6e4, h: 3.6e6 }[match[2]];
}

function config(headers) {
  const url = first(headers, MARKER).trim();
  const bucket = first(headers, 'x-backfill-bucket')?.trim();
  if (!/^https?:\/\/[A-Za-z0-9.:-]+\/[^/]+\/[A-Za-z0-9_.-]+$/.test(url)) throw new Error('bad queue url');
  if (!bucket || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket) || bucket.includes('..')) throw new Error('bad bucket');
  const prefix = (first(headers, 'x-backfill-key-prefix') ?? '').replace(/^\/+|\/+$/g, '');
  const region = /^https?:\/\/(?:sqs\.([a-z0-9-]+)\.|([a-z0-9-]+)\.queue\.)/.exec(url);
  return {
    url,
    bucket,
    prefix: prefix ? `${prefix}/` : '',
    region: region ? region[1] || region[2] : process.env.AWS_REGION || 'us-east-1',
    fifo: url.endsWith('.fifo'),
    budget: duration(first(headers, 'x-backfill-send-budget'), DEFAULT_BUDGET_MS),
    window: duration(first(headers, 'x-backfill-repeat-window'), DEFAULT_WINDOW_MS),
  };
}

function keyOf(uri, prefix) {
  if (!uri.startsWith('/')) return null;
  const path = uri.slice(1);
  if (/%2f|%5c|\\/i.test(path)) return null;
  let decoded;
  try {
    // S3 reads a literal + in a request path as a space (shared::key::ObjectKey::from_cloudfront_uri).
    decoded = decodeURIComponent(path.replace(/\+/g, " "));
  } catch {
    return null;
  }
  const key = prefix + decoded;
  if (!key || Buffer.byteLength(key) > 1024 || key.startsWith('/')) return null;
  if (/[\u0000-\u001f\u007f-\u009f]/.test(key)) return null;
  if (key.split('/').some((s) => s === '.' || s === '..')) return null;
  return key;
}

function observed(response) {
  const status = Number(response.status);
  if (!(status >= 200 && status < 300)) return null;
  const h = response.headers;
  let length = first(h, 'content-length');
  if (status === 206) length = first(h, 'content-range')?.split('/')[1];
  const out = { status };
  if (length !== undefined && /^\d+$/.test(length.trim())) out.content_length = Number(length);
  if (first(h, 'etag') !== undefined) out.etag = first(h, 'etag');
  if (first(h, 'content-type') !== undefined) out.content_type = first(h, 'content-type');
  return out;
}

function client(region) {
  let c = clients.get(region);
  if (!c) {
    c = new SQSClient({ region, maxAttempts: 1 });
    clients.set(region, c);
  }
  return c;
}

function emf(metrics, dimensions = {}) {
  const doc = { ...dimensions, ...metrics };
  doc._aws = {
    Timestamp: Date.now(),
    CloudWatchMetrics: [
      {
        Namespace: 'OverseasOrigin',
        Dimensions: [Object.keys(dimensions)],
        Metrics: Object.keys(metrics).map((Name) => ({ Name, Unit: Name.endsWith('Latency') ? 'Milliseconds' : 'Count' })),
      },
    ],
  };
  process.stdout.write(JSON.stringify(doc) + '\n');
}

const retryable = (err) => err.name === 'TimeoutError' || !err.$metadata?.httpStatusCode || err.$metadata.httpStatusCode >= 500 || err.$retryable;

async function sendWithin(sqs, input, budget) {
  const abort = new AbortController();
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => {
      abort.abort();
      reject(new Error('timeout'));
    }, budget);
  });
  const attempt = () => sqs.send(new SendMessageCommand(input), { abortSignal: abort.signal });
  const attempts = attempt().catch(async (err) => {
    if (abort.signal.aborted || !retryable(err)) throw err;
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 20));
    return attempt();
  });
  try {
    await Promise.race([attempts, expired]);
  } finally {
    clearTimeout(timer);
  }
}

async function backfill(cf, trigger, custom) {
  let c;
  try {
    c = config(custom.customHeaders);
  } catch (err) {
    emf({ BackfillSkipped: 1 }, { Reason: 'bad_config' });
    return;
  }
  const method = cf.request.method;
  if (method !== 'GET' && method !== 'HEAD') return emf({ BackfillSkipped: 1 }, { Reason: 'method' });
  let seen;
  if (trigger === 'origin-response') {
    seen = observed(cf.response);
    if (!seen) return emf({ BackfillSkipped: 1 }, { Reason: 'status' });
  }
  const key = keyOf(cf.request.uri, c.prefix);
  if (key === null) return emf({ BackfillSkipped: 1 }, { Reason: 'invalid_key' });
  const message = {
    version: 1,
    bucket: c.bucket,
    key,
    origin: { protocol: custom.protocol, host: custom.domainName, port: custom.port, path: custom.path.replace(/\/+$/, '') },
    uri: cf.request.uri,
    request_id: cf.config.requestId,
    enqueued_at: new Date().toISOString(),
    trigger,
  };
  if (seen) message.observed = seen;
  const repeatKey = `${c.bucket}/${key}`;
  const started = performance.now();
  const last = sent.get(repeatKey);
  if (last !== undefined && started - last < c.window) return emf({ BackfillSuppressedRepeat: 1 });
  const input = { QueueUrl: c.url, MessageBody: JSON.stringify(message) };
  if (c.fifo) {
    const digest = crypto.createHash('sha256').update(c.bucket).update('\0').update(key).digest();
    input.MessageDeduplicationId = digest.toString('hex');
    input.MessageGroupId = `backfill-${String(digest[0] % FIFO_GROUPS).padStart(2, '0')}`;
  }
  try {
    await sendWithin(client(c.region), input, c.budget);
    const latency = performance.now() - started;
    sent.delete(repeatKey);
    sent.set(repeatKey, started);
    if (sent.size > REPEAT_CAPACITY) sent.delete(sent.keys().next().value);
    console.log(JSON.stringify({ level: 'INFO', message: 'backfill enqueued', latency_ms: latency, bucket: c.bucket, key, request_id: message.request_id }));
    emf({ BackfillEnqueued: 1, BackfillSendLatency: latency });
  } catch (err) {
    const latency = performance.now() - started;
    console.log(JSON.stringify({ level: 'WARN', message: 'backfill not enqueued; request let through', error: String(err), bucket: c.bucket, key }));
    emf({ BackfillSendFailed: 1, BackfillSendLatency: latency }, { Reason: err.message === 'timeout' ? 'timeout' : 'error' });
  }
}

exports.handler = async (event) => {
  const cf = event?.Records?.[0]?.cf;
  const type = String(cf?.config?.eventType ?? '');
  const given = type.endsWith('-response') && cf.response ? cf.response : cf?.request;
  const custom = cf?.request?.origin?.custom;
  if (!custom?.customHeaders?.[MARKER]) return given;
  try {
    await backfill(cf, type, custom);
  } catch (err) {
    console.error(JSON.stringify({ level: 'ERROR', message: 'edge hook failed; request let through', error: String(err) }));
  }
  if (given === cf.request) {
    for (const name of Object.keys(custom.customHeaders)) if (name.startsWith(PREFIX)) delete custom.customHeaders[name];
  }
  return given;
};
