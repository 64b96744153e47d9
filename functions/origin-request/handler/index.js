'use strict';
// Lambda@Edge runs only Node.js and Python: the hook is Rust (src/), loaded as a Node-API addon.
// This file only decides whether the request concerns the hook at all, and makes sure that
// nothing the hook does can turn a viewer's request into a 502: whatever happens (the addon does
// not load, its promise rejects or never settles, anything throws), the viewer's request goes on,
// less the hook's configuration headers.

// Present on the domestic origin's custom headers only (see docs/edge.md).
const MARKER = 'x-backfill-queue-url';
const PREFIX = 'x-backfill-';
const BUDGET = 'x-backfill-send-budget';
// The Rust core's own default and bound (src/config.rs); the timer below only backs them up.
const DEFAULT_BUDGET_MS = 300;
const MAX_BUDGET_MS = 5000;
// How long past the budget the core may take before it is no longer waited for: it returns by the
// budget itself, so this fires only if the core is stuck.
const STUCK_MARGIN_MS = 50;

let core = null;
let loadError = null;
try {
  core = require('./origin_request.node');
} catch (err) {
  loadError = err;
}

exports.handler = async (event) => {
  const cf = event?.Records?.[0]?.cf;
  const type = String(cf?.config?.eventType ?? '');
  const given = type.endsWith('-response') && cf.response ? cf.response : cf?.request;
  const headers = cf?.request?.origin?.custom?.customHeaders;
  // S3-origin attempts and unmarked origins pass without crossing into Rust.
  if (!headers?.[MARKER]) {
    const s3 = cf?.request?.origin?.s3;
    if (s3) regional('RegionalRequests', s3Region, s3);
    return given;
  }
  regional('RegionalFallbacks', queueRegion, headers);
  try {
    if (core === null) throw Object.assign(new Error(`the addon did not load: ${loadError}`), { reason: 'addon_unavailable' });
    return JSON.parse(await bounded(core.handle(JSON.stringify(event)), budgetMs(headers) + STUCK_MARGIN_MS));
  } catch (err) {
    failed(err);
    if (given === cf.request) {
      for (const name of Object.keys(headers)) if (name.startsWith(PREFIX)) delete headers[name];
    }
    return given;
  }
};

// The configured budget as the core reads it (`250ms`, `1s`), capped at the core's maximum; a
// value the core refuses makes it return at once, so the default is as good a bound as any.
function budgetMs(headers) {
  const match = /^\s*(\d+)\s*(ms|s)\s*$/.exec(String(headers[BUDGET]?.[0]?.value ?? ''));
  if (!match) return DEFAULT_BUDGET_MS;
  return Math.min(Number(match[1]) * (match[2] === 's' ? 1000 : 1), MAX_BUDGET_MS);
}

// The promise, or a rejection after `ms`: a promise that never settles must not hold the viewer
// until the function's timeout.
function bounded(promise, ms) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`the core did not answer within ${ms} ms`), { reason: 'hook_stuck' })), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

// The origin attempts of each bucket region (docs/edge.md, "Per-region figures"): one EMF line per
// attempt, counted on whichever trigger is wired, as each attempt runs it once. With both triggers
// wired the origin-request hook removes the marker, so a fallback is still counted once.
const REGION = /^[a-z]{2}(?:-[a-z]+)+-\d+$/;
const S3_HOST = /\.s3(?:\.dualstack)?[.-]([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?$/;

// `origin.s3.region` when CloudFront gives it, else the region of `<bucket>.s3.<region>.amazonaws.com`.
function s3Region(s3) {
  const given = String(s3.region ?? '');
  if (REGION.test(given)) return given;
  return S3_HOST.exec(String(s3.domainName ?? ''))?.[1] ?? 'unknown';
}

// The queue's region (`sqs.<region>.amazonaws.com`, or the legacy `<region>.queue.amazonaws.com`),
// as the core reads it: the queue lives in its bucket's region.
function queueRegion(headers) {
  const host = /^[a-z]+:\/\/([^/:]+)/i.exec(String(headers[MARKER]?.[0]?.value ?? ''))?.[1] ?? '';
  const labels = host.toLowerCase().split('.');
  const region = labels[0] === 'sqs' ? labels[1] : labels[1] === 'queue' ? labels[0] : '';
  return REGION.test(region ?? '') ? region : 'unknown';
}

// One write, guarded (the region found inside too): a metric must never fail the request it counts.
function regional(metric, regionOf, from) {
  try {
    const region = regionOf(from);
    const functionName = process.env.AWS_LAMBDA_FUNCTION_NAME;
    const dimensions = functionName ? { FunctionName: functionName, BucketRegion: region } : { BucketRegion: region };
    process.stdout.write(
      JSON.stringify({
        ...dimensions,
        [metric]: 1,
        _aws: {
          Timestamp: Date.now(),
          CloudWatchMetrics: [{ Namespace: 'OverseasOrigin', Dimensions: [Object.keys(dimensions)], Metrics: [{ Name: metric, Unit: 'Count' }] }],
        },
      }) + '\n',
    );
  } catch {
    // Counting must not fail the request it counts.
  }
}

// One log line and one EMF line (the core's metric and dimensions: see hook.rs), so a broken
// hook shows on the dashboard and in the send-failure alarm like any send that failed.
function failed(err) {
  const reason = err?.reason ?? 'hook_failed';
  const functionName = process.env.AWS_LAMBDA_FUNCTION_NAME;
  const dimensions = functionName ? { FunctionName: functionName, Reason: reason } : { Reason: reason };
  try {
    console.error(JSON.stringify({ level: 'ERROR', message: 'edge hook failed; request let through', reason, error: String(err) }));
    process.stdout.write(
      JSON.stringify({
        ...dimensions,
        BackfillSendFailed: 1,
        _aws: {
          Timestamp: Date.now(),
          CloudWatchMetrics: [{ Namespace: 'OverseasOrigin', Dimensions: [Object.keys(dimensions)], Metrics: [{ Name: 'BackfillSendFailed', Unit: 'Count' }] }],
        },
      }) + '\n',
    );
  } catch {
    // Logging must not fail the request it is about.
  }
}
