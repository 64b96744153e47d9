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

// The EMF documents among the captured lines that carry `metric`.
function regionalLines(text, metric) {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes('"_aws"'))
    .map((l) => JSON.parse(l))
    .filter((d) => metric in d);
}

function regionalShape(doc, metric, region, functionName) {
  const dimensions = functionName ? { FunctionName: functionName, BucketRegion: region } : { BucketRegion: region };
  assert.equal(typeof doc._aws.Timestamp, 'number');
  assert.deepEqual(doc, {
    ...dimensions,
    [metric]: 1,
    _aws: {
      Timestamp: doc._aws.Timestamp,
      CloudWatchMetrics: [{ Namespace: 'OverseasOrigin', Dimensions: [Object.keys(dimensions)], Metrics: [{ Name: metric, Unit: 'Count' }] }],
    },
  });
}

// Runs `call` with AWS_LAMBDA_FUNCTION_NAME set to `name` (unset for undefined).
async function asFunction(name, call) {
  const before = process.env.AWS_LAMBDA_FUNCTION_NAME;
  if (name === undefined) delete process.env.AWS_LAMBDA_FUNCTION_NAME;
  else process.env.AWS_LAMBDA_FUNCTION_NAME = name;
  try {
    return await call();
  } finally {
    if (before === undefined) delete process.env.AWS_LAMBDA_FUNCTION_NAME;
    else process.env.AWS_LAMBDA_FUNCTION_NAME = before;
  }
}

const never = () => {
  throw new Error('an S3 attempt must not cross into Rust');
};

test('an S3 attempt is one RegionalRequests line, its region from origin.s3.region, without crossing into Rust', async () => {
  const handler = load({ handle: never }).handler;
  const e = event('origin-request-s3');
  e.Records[0].cf.request.origin.s3.domainName = 'overseas-origin.s3.eu-west-1.amazonaws.com';
  const [reply, text] = await asFunction('us-east-1.origin-request', () => captured(() => handler(structuredClone(e))));
  assert.deepEqual(reply, e.Records[0].cf.request);
  assert.equal(text.split('\n').filter(Boolean).length, 1, text);
  const [doc] = regionalLines(text, 'RegionalRequests');
  regionalShape(doc, 'RegionalRequests', 'ap-southeast-1', 'us-east-1.origin-request');
});

test("without origin.s3.region the S3 attempt's region comes from the bucket's domain name", async () => {
  const handler = load({ handle: never }).handler;
  for (const [domainName, region] of [
    ['overseas-origin.s3.eu-west-1.amazonaws.com', 'eu-west-1'],
    ['media.example.com.s3.ap-northeast-1.amazonaws.com', 'ap-northeast-1'],
    ['overseas-origin.s3.dualstack.sa-east-1.amazonaws.com', 'sa-east-1'],
    ['overseas-origin.s3-us-west-2.amazonaws.com', 'us-west-2'],
    ['overseas-origin.s3.amazonaws.com', 'unknown'],
  ]) {
    const e = event('origin-request-s3');
    delete e.Records[0].cf.request.origin.s3.region;
    e.Records[0].cf.request.origin.s3.domainName = domainName;
    const [reply, text] = await asFunction(undefined, () => captured(() => handler(structuredClone(e))));
    assert.deepEqual(reply, e.Records[0].cf.request);
    const docs = regionalLines(text, 'RegionalRequests');
    assert.equal(docs.length, 1, text);
    regionalShape(docs[0], 'RegionalRequests', region);
  }
});

test("a marked domestic attempt is one RegionalFallbacks line in its queue's region, and the core still runs", async () => {
  const seen = [];
  const handler = load({ handle: async (json) => (seen.push(json), JSON.stringify({ answered: true })) }).handler;
  for (const [url, region] of [
    ['https://sqs.eu-west-1.amazonaws.com/123456789012/backfill', 'eu-west-1'],
    ['https://ap-south-1.queue.amazonaws.com/123456789012/backfill.fifo', 'ap-south-1'],
    ['http://127.0.0.1:5000/123456789012/backfill', 'unknown'],
  ]) {
    const e = marked();
    e.Records[0].cf.request.origin.custom.customHeaders['x-backfill-queue-url'][0].value = url;
    const [reply, text] = await asFunction('us-east-1.origin-request', () => captured(() => handler(structuredClone(e))));
    assert.deepEqual(reply, { answered: true });
    assert.deepEqual(regionalLines(text, 'RegionalRequests'), []);
    const docs = regionalLines(text, 'RegionalFallbacks');
    assert.equal(docs.length, 1, text);
    regionalShape(docs[0], 'RegionalFallbacks', region, 'us-east-1.origin-request');
  }
  assert.equal(seen.length, 3);
});

test('an unmarked custom origin counts nothing', async () => {
  const e = event('origin-request-unmarked');
  const [reply, text] = await captured(() => load({ handle: never }).handler(structuredClone(e)));
  assert.deepEqual(reply, e.Records[0].cf.request);
  assert.equal(text, '');
});

test('origin-response: the S3 attempt and the fallback are counted on the response event, the response handed back', async () => {
  const handler = load({ handle: async (json) => JSON.stringify(JSON.parse(json).Records[0].cf.response) }).handler;
  const s3 = event('origin-response-200');
  const request = s3.Records[0].cf.request;
  request.origin = { s3: { domainName: 'overseas-origin.s3.ap-southeast-2.amazonaws.com', path: '', customHeaders: {} } };
  s3.Records[0].cf.response.status = '403';
  const [s3Reply, s3Text] = await asFunction(undefined, () => captured(() => handler(structuredClone(s3))));
  assert.deepEqual(s3Reply, s3.Records[0].cf.response);
  assert.equal(regionalLines(s3Text, 'RegionalRequests').length, 1, s3Text);
  regionalShape(regionalLines(s3Text, 'RegionalRequests')[0], 'RegionalRequests', 'ap-southeast-2');

  const domestic = event('origin-response-200');
  const [reply, text] = await asFunction(undefined, () => captured(() => handler(structuredClone(domestic))));
  assert.deepEqual(reply, domestic.Records[0].cf.response);
  assert.deepEqual(regionalLines(text, 'RegionalRequests'), []);
  assert.equal(regionalLines(text, 'RegionalFallbacks').length, 1, text);
  regionalShape(regionalLines(text, 'RegionalFallbacks')[0], 'RegionalFallbacks', 'us-east-1');
});

test('a broken console does not fail the request', async () => {
  const handler = load({ handle: async () => JSON.stringify({ answered: true }) }).handler;
  const write = process.stdout.write;
  process.stdout.write = () => {
    throw new Error('EPIPE');
  };
  try {
    const s3 = event('origin-request-s3');
    assert.deepEqual(await handler(structuredClone(s3)), s3.Records[0].cf.request);
    assert.deepEqual(await handler(marked()), { answered: true });
    const e = event('origin-request-s3');
    Object.defineProperty(e.Records[0].cf.request.origin.s3, 'region', {
      get() {
        throw new Error('a getter that throws');
      },
      enumerable: true,
    });
    assert.equal(await handler(e), e.Records[0].cf.request);
  } finally {
    process.stdout.write = write;
  }
});
