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
  if (!headers?.[MARKER]) return given;
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
