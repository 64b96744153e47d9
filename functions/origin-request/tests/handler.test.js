'use strict';
// The JavaScript handler's fail-open paths (node --test; run by tests/edge on Node 22): a broken
// addon, and cores that reject, throw, answer garbage or never settle. Each copy of index.js is
// loaded from a package directory of its own, as Lambda loads it.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const Module = require('node:module');
const os = require('node:os');
const path = require('node:path');
const test = require('node:test');

const HANDLER = path.join(__dirname, '..', 'handler', 'index.js');
const EVENTS = path.join(__dirname, '..', '..', '..', 'events');

function event(name) {
  return JSON.parse(fs.readFileSync(path.join(EVENTS, `${name}.json`), 'utf8'));
}

function marked(budget) {
  const e = event('origin-request-domestic');
  const headers = e.Records[0].cf.request.origin.custom.customHeaders;
  headers['x-backfill-queue-url'] = [{ key: 'X-Backfill-Queue-Url', value: 'https://sqs.eu-west-1.amazonaws.com/123456789012/backfill' }];
  if (budget) headers['x-backfill-send-budget'] = [{ key: 'X-Backfill-Send-Budget', value: budget }];
  return e;
}

function stripped(e) {
  const request = structuredClone(e.Records[0].cf.request);
  const headers = request.origin.custom.customHeaders;
  for (const name of Object.keys(headers)) if (name.startsWith('x-backfill-')) delete headers[name];
  return request;
}

// A package directory holding index.js and `addon` as origin_request.node: bytes (a file that is
// no shared object), or an object that stands for the loaded addon.
function load(addon) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-handler-'));
  fs.copyFileSync(HANDLER, path.join(dir, 'index.js'));
  const file = path.join(dir, 'origin_request.node');
  fs.writeFileSync(file, typeof addon === 'string' ? addon : 'stands for a loaded addon');
  const dlopen = Module._extensions['.node'];
  if (typeof addon !== 'string') {
    Module._extensions['.node'] = (module, filename) => {
      if (filename !== file) return dlopen(module, filename);
      module.exports = addon;
    };
  }
  try {
    return require(path.join(dir, 'index.js'));
  } finally {
    Module._extensions['.node'] = dlopen;
  }
}

// Runs `call` with the handler's JSON lines on stdout and stderr captured; returns [result,
// captured text]. Other writes (the test runner's own report) go through.
async function captured(call) {
  const out = [];
  const writes = [process.stdout.write, process.stderr.write];
  const capture = (write) =>
    function (chunk, ...rest) {
      if (String(chunk).startsWith('{')) return out.push(String(chunk)) > 0;
      return write.call(this, chunk, ...rest);
    };
  process.stdout.write = capture(writes[0]);
  process.stderr.write = capture(writes[1]);
  try {
    return [await call(), out.join('')];
  } finally {
    [process.stdout.write, process.stderr.write] = writes;
  }
}

function failureMetric(text, reason) {
  const docs = text.split('\n').filter((l) => l.startsWith('{') && l.includes('"_aws"')).map((l) => JSON.parse(l));
  const doc = docs.find((d) => d.BackfillSendFailed === 1);
  assert.ok(doc, `no BackfillSendFailed EMF line in ${JSON.stringify(text)}`);
  assert.equal(doc.Reason, reason);
  assert.deepEqual(doc._aws.CloudWatchMetrics[0].Dimensions, [['Reason']]);
}

test('a broken addon: S3 attempts pass unchanged, marked ones go on without the hook headers', async () => {
  const handler = load('\x7fELF but not a shared object').handler;
  const s3 = event('origin-request-s3');
  assert.deepEqual(await handler(structuredClone(s3)), s3.Records[0].cf.request);
  const e = marked();
  const [reply, text] = await captured(() => handler(structuredClone(e)));
  assert.deepEqual(reply, stripped(e));
  assert.deepEqual(Object.keys(reply.origin.custom.customHeaders), ['x-origin-verify']);
  failureMetric(text, 'addon_unavailable');
});

for (const [name, addon, reason] of [
  ['rejects', { handle: async () => Promise.reject(new Error('core failed')) }, 'hook_failed'],
  ['throws', { handle: () => { throw new TypeError('bad argument'); } }, 'hook_failed'],
  ['answers garbage', { handle: async () => '{"not json' }, 'hook_failed'],
  ['is missing its function', {}, 'hook_failed'],
]) {
  test(`a core that ${name}: the request goes on without the hook headers`, async () => {
    const e = marked();
    const [reply, text] = await captured(() => load(addon).handler(structuredClone(e)));
    assert.deepEqual(reply, stripped(e));
    failureMetric(text, reason);
  });
}

test('a core that never settles is waited for a little past the budget, no longer', async () => {
  const handler = load({ handle: () => new Promise(() => {}) }).handler;
  const e = marked('100ms');
  const started = performance.now();
  const [reply, text] = await captured(() => handler(structuredClone(e)));
  const elapsed = performance.now() - started;
  assert.deepEqual(reply, stripped(e));
  assert.ok(elapsed >= 145 && elapsed < 400, `took ${elapsed} ms for a 100 ms budget`);
  failureMetric(text, 'hook_stuck');
});

test('an unreadable budget is bounded by the default', async () => {
  const handler = load({ handle: () => new Promise(() => {}) }).handler;
  const started = performance.now();
  await captured(() => handler(marked('soon')));
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 345 && elapsed < 700, `took ${elapsed} ms`);
});

test('an origin-response event gets its response back whatever the core does', async () => {
  const e = event('origin-response-200');
  e.Records[0].cf.request.origin.custom.customHeaders['x-backfill-queue-url'] = [{ key: 'X-Backfill-Queue-Url', value: 'https://sqs.eu-west-1.amazonaws.com/1/q' }];
  const [reply] = await captured(() => load({ handle: async () => Promise.reject(new Error('x')) }).handler(structuredClone(e)));
  assert.deepEqual(reply, e.Records[0].cf.response);
});

test("a core that answers is the handler's answer", async () => {
  const e = marked();
  const answer = { uri: '/images/cat.jpg', answered: 'by the core' };
  const seen = [];
  const handler = load({ handle: async (json) => (seen.push(JSON.parse(json)), JSON.stringify(answer)) }).handler;
  assert.deepEqual(await handler(structuredClone(e)), answer);
  assert.deepEqual(seen, [e]);
});
