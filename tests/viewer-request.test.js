'use strict';
// The viewer-request function (functions/viewer-request/viewer-request.js), run by node --test
// (tests/viewer-request, on Node 22) the way CloudFront runs it (tests/lib/cloudfront-function.js):
// the code the template deploys (its Fn::Sub filled in with the edge stack's parameters) evaluated
// on its own, its import of the cloudfront module bound to a stub recording the origin calls, its
// handler given CloudFront Functions viewer-request events.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const test = require('node:test');
const cloudfrontFunction = require('./lib/cloudfront-function');

const FILE = path.join(__dirname, '..', 'functions', 'viewer-request', 'viewer-request.js');
const SOURCE = fs.readFileSync(FILE, 'utf8');
// The template's copy (the Fn::Sub's text), extracted by tests/viewer-request; PENDING while the
// template does not hold the function yet.
const TEMPLATE_CODE = process.env.VIEWER_REQUEST_TEMPLATE_CODE;

// CloudFront Functions quotas: "Maximum function size" 10 KB, the code as deployed. The longest
// value each parameter may take: ThumbnailPrefix 202 characters, ViewerRoutes 600, OfflineRegions
// 120 (the edge stack's bounds); RegionalOrigins four slots, slot 1's region 20 characters
// (BucketRegion's MaxLength), the others' 19 (the longest Region*BackfillQueueArn's pattern takes).
const MAX_FUNCTION_BYTES = 10 * 1024;
const PLACEHOLDERS = ['ThumbnailPrefix', 'ThumbnailFormats', 'RegionalOrigins', 'ViewerRoutes', 'OfflineRegions'];
const FORMATS = ['none', 'webp', 'avif', 'avif,webp'];
const LONGEST = {
  ThumbnailPrefix: 'a'.repeat(201) + '/',
  ThumbnailFormats: 'avif,webp',
  RegionalOrigins: '1:us-isob-abcdefghij-1,2:us-gov-abcdefghij-1,3:us-gov-abcdefghij-1,4:us-gov-abcdefghij-1',
  ViewerRoutes: 'ZZ=ap-southeast-7,'.repeat(34).slice(0, 600),
  OfflineRegions: 'us-isob-abcdefghij-1,'.repeat(6).slice(0, 120),
};
const DEFAULTS = {
  ThumbnailPrefix: 'thumbnails/',
  ThumbnailFormats: 'avif,webp',
  RegionalOrigins: '1:eu-central-1,,,',
  ViewerRoutes: '',
  OfflineRegions: '',
};
// The origins the distribution defines (CloudFront fails a request naming another).
const ORIGINS = ['overseas-bucket', 'domestic', 'domestic-direct', 'bucket-2', 'domestic-2', 'bucket-3', 'domestic-3',
  'bucket-4', 'domestic-4'];

// The function as deployed with these parameters (the defaults for the others).
function deploy(parameters = {}, options = {}) {
  return cloudfrontFunction.load(SOURCE, { ...DEFAULTS, ...parameters }, { origins: ORIGINS, filename: FILE, ...options });
}

// The handler of a single-region deployment negotiating these formats.
function load(formats, prefix = 'thumbnails/') {
  return deploy({ ThumbnailFormats: formats, ThumbnailPrefix: prefix }).handler;
}

// A viewer-request event as CloudFront Functions passes it (CloudFront Developer Guide, "CloudFront
// Functions event structure"): lower-case header names, each { value } (and multiValue when the
// viewer sent the header more than once), the query string apart from the URI.
function viewerRequest(uri, accept, extra = {}) {
  const headers = {
    host: { value: 'd111111abcdef8.cloudfront.net' },
    'user-agent': { value: 'Mozilla/5.0' },
  };
  if (accept !== undefined) headers.accept = { value: accept };
  return {
    version: '1.0',
    context: {
      distributionDomainName: 'd111111abcdef8.cloudfront.net',
      distributionId: 'EDFDVBD6EXAMPLE',
      eventType: 'viewer-request',
      requestId: '4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_1oF26ClkoUSEQ==',
    },
    viewer: { ip: '198.51.100.11' },
    request: {
      method: 'GET',
      uri,
      querystring: extra.querystring || {},
      headers: Object.assign(headers, extra.headers || {}),
      cookies: extra.cookies || {},
    },
  };
}

// The URI the handler sends on, having checked that nothing else of the request changed.
function served(handler, uri, accept, extra) {
  const event = viewerRequest(uri, accept, extra);
  const before = structuredClone(event.request);
  const request = handler(event);
  assert.deepEqual({ ...request, uri: before.uri }, before, 'only the URI may change');
  return request.uri;
}

// Accept headers browsers send for <img> (each from the browser's own source or network log).
const ACCEPT = {
  chrome: 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8',
  firefox: 'image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5',
  safari: 'image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5',
  safari15: 'image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5',
  chrome70: 'image/webp,image/apng,image/*,*/*;q=0.8',
  ie11: 'image/png, image/svg+xml, image/*;q=0.8, */*;q=0.5',
  curl: '*/*',
};
const JPG = '/thumbnails/images/cat.jpg/640.jpg';

// Where a viewer's request goes: null for the cache behaviour's own origin (no call), else the
// origin (or group) the function selected. Nothing but the URI of a thumbnail may change.
function origin(fn, country, uri = '/images/cat.jpg', accept = undefined) {
  const headers = country === undefined ? {} : { 'cloudfront-viewer-country': { value: country } };
  const event = viewerRequest(uri, accept, { headers });
  const before = structuredClone(event.request);
  const { request, calls, origin } = fn.invoke(event);
  assert.deepEqual({ ...request, uri: before.uri }, before, 'only the URI may change');
  assert.ok(calls.length <= 1, `one origin call at most: ${JSON.stringify(calls)}`);
  return origin;
}

const GROUP = (slot) => ({
  originGroup: { originIds: ['bucket-' + slot, 'domestic-' + slot], failoverCriteria: { statusCodes: [403, 404, 500, 502, 503, 504] } },
});
const BUCKET = (slot) => ({ originId: 'bucket-' + slot });
const DIRECT = { originId: 'domestic-direct' };
const THUMBNAIL = '/thumbnails/images/cat.jpg/640.jpg';
const EUROPE_ASIA = '1:eu-central-1,2:ap-southeast-1,,';

// Each viewer country's origin, for a page and a thumbnail.
function routes(fn, countries) {
  const found = {};
  for (const country of countries) found[country] = [origin(fn, country), origin(fn, country, THUMBNAIL)];
  return found;
}

test('the template deploys this file: its FunctionCode is the file, verbatim', () => {
  assert.ok(TEMPLATE_CODE, 'VIEWER_REQUEST_TEMPLATE_CODE names the template\'s copy (run by tests/viewer-request)');
  assert.equal(fs.readFileSync(TEMPLATE_CODE, 'utf8'), SOURCE);
});

test('the code holds no placeholder but the parameters, and fits the 10 KB quota with the longest values', (t) => {
  const names = [...SOURCE.matchAll(/\$\{([^}]*)\}/g)].map((m) => m[1]);
  assert.deepEqual([...new Set(names)].sort(), [...PLACEHOLDERS].sort());
  assert.equal(LONGEST.ViewerRoutes.length, 600);
  assert.equal(LONGEST.OfflineRegions.length, 120);
  for (const formats of FORMATS) {
    const { bytes } = deploy({ ...LONGEST, ThumbnailFormats: formats });
    assert.ok(bytes <= MAX_FUNCTION_BYTES, `${bytes} bytes with the longest parameters, ThumbnailFormats=${formats}`);
  }
  const longest = deploy(LONGEST);
  assert.deepEqual(origin(longest, 'DE'), DIRECT, 'the longest parameters load and run (slot 1 offline)');
  t.diagnostic(`function size: ${deploy({ RegionalOrigins: EUROPE_ASIA }).bytes} bytes as deployed with the defaults, `
    + `${longest.bytes} with the longest parameters (quota ${MAX_FUNCTION_BYTES})`);
});

test('the code imports the cloudfront module first, and uses only what cloudfront-js-2.0 supports', () => {
  assert.equal(SOURCE.split('\n')[0], cloudfrontFunction.IMPORT, 'origin modification needs the import as the first line');
  // Its comments are whole lines of //.
  const code = SOURCE.split('\n').slice(1).join('\n').replace(/^\s*\/\/.*$/gm, '');
  const refused = {
    'a template literal (${ is Fn::Sub\'s)': /`/,
    'another module (import)': /\bimport\b/,
    'a module (require)': /\brequire\s*\(/,
    'dynamic code (eval)': /\beval\s*\(/,
    'dynamic code (Function)': /\bnew\s+Function\b/,
    'timers (none at the edge)': /\bset(Timeout|Interval|Immediate)\b/,
    'the network (none at the edge)': /\bfetch\s*\(/,
    'Node.js globals': /\b(process|global|globalThis|Buffer|__dirname)\b/,
    'for...of (not in the runtime)': /\bfor\s*\((const|let|var)\s+\w+\s+of\b/,
    'a class': /\bclass\s/,
    'optional chaining or nullish coalescing': /\?\.|\?\?/,
    'spread': /\.\.\./,
  };
  for (const [what, pattern] of Object.entries(refused)) {
    assert.doesNotMatch(code, pattern, `the function uses ${what}`);
  }
  assert.match(code, /^function handler\(event\) \{$/m, 'a top-level function named handler');
  assert.throws(() => cloudfrontFunction.load('// no import\n' + SOURCE, DEFAULTS), /first line/);
});

test('a single-region deployment never calls the origin helpers, whatever the country, route or outage', () => {
  const single = [
    deploy(),
    deploy({ RegionalOrigins: '1:eu-central-1' }),
    deploy({ ViewerRoutes: 'SG=domestic,JP=ap-southeast-1', OfflineRegions: 'eu-central-1' }),
  ];
  for (const fn of single) {
    for (const country of ['DE', 'SG', 'JP', 'US', 'BR', 'ZZ', '', undefined]) {
      assert.equal(origin(fn, country), null, `page, ${country}`);
      assert.equal(origin(fn, country, THUMBNAIL, ACCEPT.chrome), null, `thumbnail, ${country}`);
    }
    assert.deepEqual(fn.calls, []);
  }
});

test('two regions: each viewer goes to the nearer (Frankfurt or Singapore)', () => {
  const fn = deploy({ RegionalOrigins: EUROPE_ASIA });
  assert.deepEqual(routes(fn, ['DE', 'SG', 'JP', 'AU', 'US', 'BR', 'ZA', 'IN', 'CN', 'RU', 'AE', 'NZ']), {
    DE: [null, null],
    SG: [GROUP(2), BUCKET(2)],
    JP: [GROUP(2), BUCKET(2)],
    AU: [GROUP(2), BUCKET(2)],
    US: [null, null],
    BR: [null, null],
    // Pretoria is 8,657 km from Frankfurt and 8,661 km from Singapore (whole degrees).
    ZA: [null, null],
    IN: [GROUP(2), BUCKET(2)],
    CN: [GROUP(2), BUCKET(2)],
    RU: [null, null],
    AE: [null, null],
    NZ: [GROUP(2), BUCKET(2)],
  });
});

test('three regions, an empty slot between: the Americas go to Virginia', () => {
  const fn = deploy({ RegionalOrigins: '1:eu-central-1,,3:us-east-1,4:ap-southeast-1' });
  assert.deepEqual(routes(fn, ['DE', 'GB', 'US', 'CA', 'MX', 'BR', 'AR', 'JP', 'AU', 'IN', 'ZA', 'EG']), {
    DE: [null, null],
    GB: [null, null],
    US: [GROUP(3), BUCKET(3)],
    CA: [GROUP(3), BUCKET(3)],
    MX: [GROUP(3), BUCKET(3)],
    BR: [GROUP(3), BUCKET(3)],
    AR: [GROUP(3), BUCKET(3)],
    JP: [GROUP(4), BUCKET(4)],
    AU: [GROUP(4), BUCKET(4)],
    IN: [GROUP(4), BUCKET(4)],
    ZA: [null, null],
    EG: [null, null],
  });
});

test('neighbouring regions: each capital goes to its own', () => {
  const europe = deploy({ RegionalOrigins: '1:eu-central-1,2:eu-west-1,3:eu-west-2,4:eu-west-3' });
  assert.deepEqual(routes(europe, ['DE', 'IE', 'GB', 'FR', 'PL', 'PT']), {
    DE: [null, null], IE: [GROUP(2), BUCKET(2)], GB: [GROUP(3), BUCKET(3)], FR: [GROUP(4), BUCKET(4)],
    PL: [null, null], PT: [GROUP(4), BUCKET(4)],
  });
  const asia = deploy({ RegionalOrigins: '1:ap-northeast-3,2:ap-northeast-1,3:ap-northeast-2,4:ap-east-1' });
  assert.deepEqual(routes(asia, ['JP', 'KR', 'HK', 'TW']), {
    JP: [GROUP(2), BUCKET(2)], KR: [GROUP(3), BUCKET(3)], HK: [GROUP(4), BUCKET(4)], TW: [GROUP(4), BUCKET(4)],
  });
});

test('every commercial region is located: a viewer beside it goes to it rather than to the far side of the world', () => {
  const beside = {
    'us-east-1': 'US', 'us-east-2': 'US', 'us-west-1': 'US', 'us-west-2': 'US', 'ca-central-1': 'CA', 'ca-west-1': 'CA',
    'mx-central-1': 'MX', 'sa-east-1': 'BR', 'eu-west-1': 'IE', 'eu-west-2': 'GB', 'eu-west-3': 'FR',
    'eu-central-1': 'DE', 'eu-central-2': 'CH', 'eu-south-1': 'IT', 'eu-south-2': 'ES', 'eu-north-1': 'SE',
    'il-central-1': 'IL', 'me-south-1': 'BH', 'me-central-1': 'AE', 'af-south-1': 'ZA', 'ap-south-1': 'IN',
    'ap-south-2': 'IN', 'ap-east-1': 'HK', 'ap-east-2': 'TW', 'ap-northeast-1': 'JP', 'ap-northeast-2': 'KR',
    'ap-northeast-3': 'JP', 'ap-southeast-1': 'SG', 'ap-southeast-2': 'AU', 'ap-southeast-3': 'ID',
    'ap-southeast-4': 'AU', 'ap-southeast-5': 'MY', 'ap-southeast-6': 'NZ', 'ap-southeast-7': 'TH',
  };
  for (const [region, country] of Object.entries(beside)) {
    const far = region.startsWith('ap-southeast-') && 'AU NZ'.includes(country) ? 'eu-west-1' : 'ap-southeast-2';
    const fn = deploy({ RegionalOrigins: `1:${far},2:${region}` });
    assert.deepEqual(origin(fn, country), GROUP(2), `${country} with ${region} beside it and ${far} far`);
  }
});

test('a route overrides the distance: to a region, to the domestic origin, to a region not deployed', () => {
  const fn = deploy({ RegionalOrigins: EUROPE_ASIA, ViewerRoutes: 'JP=eu-central-1,DE=ap-southeast-1,BR=domestic,CN=us-west-2' });
  assert.deepEqual(routes(fn, ['JP', 'DE', 'BR', 'CN', 'SG', 'FR']), {
    JP: [null, null],
    DE: [GROUP(2), BUCKET(2)],
    // Thumbnails are in the buckets only: the nearest.
    BR: [DIRECT, null],
    CN: [DIRECT, BUCKET(2)],
    SG: [GROUP(2), BUCKET(2)],
    FR: [null, null],
  });
  const asia = deploy({ RegionalOrigins: EUROPE_ASIA, ViewerRoutes: 'JP=domestic' });
  assert.deepEqual(routes(asia, ['JP']), { JP: [DIRECT, BUCKET(2)] });
  const spaced = deploy({ RegionalOrigins: EUROPE_ASIA, ViewerRoutes: ' JP = eu-central-1 , , BR=domestic' });
  assert.equal(origin(spaced, 'JP'), null);
  assert.deepEqual(origin(spaced, 'BR'), DIRECT);
});

test('a region out of service: its viewers go to the domestic origin, their thumbnails to the nearest bucket online', () => {
  const asia = deploy({ RegionalOrigins: '1:eu-central-1,2:ap-southeast-1,3:ap-northeast-1', OfflineRegions: 'ap-northeast-1' });
  assert.deepEqual(routes(asia, ['JP', 'KR', 'SG', 'DE']), {
    JP: [DIRECT, BUCKET(2)],
    KR: [DIRECT, BUCKET(2)],
    SG: [GROUP(2), BUCKET(2)],
    DE: [null, null],
  });
  const routed = deploy({ RegionalOrigins: EUROPE_ASIA, ViewerRoutes: 'DE=ap-southeast-1', OfflineRegions: 'ap-southeast-1' });
  assert.deepEqual(routes(routed, ['DE', 'SG']), { DE: [DIRECT, null], SG: [DIRECT, null] });
  const first = deploy({ RegionalOrigins: EUROPE_ASIA, OfflineRegions: 'us-east-1,eu-central-1' });
  assert.deepEqual(routes(first, ['DE', 'SG', 'ZZ']), {
    DE: [DIRECT, BUCKET(2)],
    SG: [GROUP(2), BUCKET(2)],
    ZZ: [DIRECT, BUCKET(2)],
  });
  const none = deploy({ RegionalOrigins: EUROPE_ASIA, OfflineRegions: 'ap-southeast-1,eu-central-1' });
  assert.deepEqual(routes(none, ['DE', 'SG']), { DE: [DIRECT, null], SG: [DIRECT, null] });
});

test('a region the function cannot locate is reached by a route only (or as slot 1, by viewers of no known country)', () => {
  const fn = deploy({ RegionalOrigins: '1:eu-central-1,2:xx-newregion-1', ViewerRoutes: 'JP=xx-newregion-1' });
  assert.deepEqual(routes(fn, ['SG', 'JP', 'ZZ']), { SG: [null, null], JP: [GROUP(2), BUCKET(2)], ZZ: [null, null] });
  const first = deploy({ RegionalOrigins: '1:xx-newregion-1,2:ap-southeast-1' });
  assert.deepEqual(routes(first, ['DE', 'SG', 'ZZ']), { DE: [GROUP(2), BUCKET(2)], SG: [GROUP(2), BUCKET(2)], ZZ: [null, null] });
});

test('a viewer of no known country goes to slot 1', () => {
  const fn = deploy({ RegionalOrigins: EUROPE_ASIA });
  for (const country of [undefined, '', 'ZZ', 'XX', 'AQ', 'sg', 'SGP', '__proto__', 'constructor']) {
    assert.equal(origin(fn, country), null, `country ${country}`);
    assert.equal(origin(fn, country, THUMBNAIL), null, `country ${country}`);
  }
  const event = viewerRequest('/images/cat.jpg', undefined, { headers: { 'cloudfront-viewer-country': {} } });
  assert.equal(fn.invoke(event).origin, null);
});

test('a thumbnail gets both its format and its bucket; a page its origin group, its URI untouched', () => {
  const fn = deploy({ RegionalOrigins: EUROPE_ASIA });
  const event = viewerRequest(JPG, ACCEPT.chrome, { headers: { 'cloudfront-viewer-country': { value: 'SG' } } });
  const { request, origin: chosen } = fn.invoke(event);
  assert.equal(request.uri, '/thumbnails/images/cat.jpg/640.avif');
  assert.deepEqual(chosen, BUCKET(2));
  assert.deepEqual(origin(fn, 'SG', '/images/cat.jpg/640.jpg', ACCEPT.chrome), GROUP(2));
  assert.deepEqual(origin(fn, 'SG', '/thumbnails/not-a-rendition', ACCEPT.chrome), BUCKET(2));
});

test('an exception inside never escapes: the request goes on unchanged to the behaviour\'s origin', () => {
  // A distribution without slot 2's origins: CloudFront refuses the id.
  const missing = deploy({ RegionalOrigins: EUROPE_ASIA }, { origins: ['overseas-bucket', 'domestic', 'domestic-direct'] });
  const event = viewerRequest(JPG, ACCEPT.chrome, { headers: { 'cloudfront-viewer-country': { value: 'SG' } } });
  const before = structuredClone(event.request);
  const { request, calls } = missing.invoke(event);
  assert.deepEqual(request, before);
  assert.deepEqual(calls, []);
  const fn = deploy({ RegionalOrigins: EUROPE_ASIA });
  const broken = [
    { request: { uri: '/images/cat.jpg' } },
    { request: { uri: JPG, headers: null } },
    { request: { headers: {} } },
    { request: { uri: JPG, headers: { accept: { multiValue: 'image/avif' } } } },
    { request: { uri: '/images/cat.jpg', headers: { 'cloudfront-viewer-country': null } } },
  ];
  for (const event of broken) {
    const before = structuredClone(event.request);
    assert.deepEqual(fn.invoke(event).request, before, JSON.stringify(event));
  }
  assert.equal(fn.invoke({}).request, undefined);
});

test('the loader: Fn::Sub rendering, an unknown placeholder, a missing handler, calls recorded per invocation', () => {
  assert.equal(cloudfrontFunction.render("a '${X}' ${!Y}", { X: 1 }), "a '1' ${Y}");
  assert.throws(() => cloudfrontFunction.render('${AWS::Region}', {}), /AWS::Region/);
  assert.throws(() => cloudfrontFunction.load(cloudfrontFunction.IMPORT + '\nvar x = 1;', {}), /no handler/);
  const fn = deploy({ RegionalOrigins: EUROPE_ASIA });
  fn.handler(viewerRequest('/a', undefined, { headers: { 'cloudfront-viewer-country': { value: 'JP' } } }));
  assert.deepEqual(fn.calls, [{ method: 'createRequestOriginGroup', args: [GROUP(2).originGroup] }]);
  const { calls } = fn.invoke(viewerRequest('/a', undefined, { headers: { 'cloudfront-viewer-country': { value: 'SG' } } }));
  assert.equal(calls.length, 1);
  assert.equal(fn.calls.length, 1, 'invoke takes its own calls out of the record');
  const peeking = cloudfrontFunction.load(cloudfrontFunction.IMPORT + '\nfunction handler(e) { return [typeof cf, typeof __cloudfront, typeof require, typeof process]; }', {});
  assert.deepEqual([...peeking.handler({})], ['object', 'undefined', 'undefined', 'undefined']);
  const looping = cloudfrontFunction.load(cloudfrontFunction.IMPORT + '\nfunction handler(e) { for (;;) {} }', {}, { timeoutMs: 20 });
  assert.throws(() => looping.handler({}), /timed out/);
});

test('Chrome, Firefox and Safari get AVIF when AVIF is written; browsers without AVIF get WebP', () => {
  const both = load('avif,webp');
  assert.equal(served(both, JPG, ACCEPT.chrome), '/thumbnails/images/cat.jpg/640.avif');
  assert.equal(served(both, JPG, ACCEPT.firefox), '/thumbnails/images/cat.jpg/640.avif');
  assert.equal(served(both, JPG, ACCEPT.safari), '/thumbnails/images/cat.jpg/640.avif');
  assert.equal(served(both, JPG, ACCEPT.safari15), '/thumbnails/images/cat.jpg/640.webp');
  assert.equal(served(both, JPG, ACCEPT.chrome70), '/thumbnails/images/cat.jpg/640.webp');
});

test('browsers that name neither format, and clients sending only wildcards, keep the primary', () => {
  const both = load('avif,webp');
  for (const accept of [ACCEPT.ie11, ACCEPT.curl, 'image/*', 'image/*,*/*;q=0.8', '', 'text/html', undefined]) {
    assert.equal(served(both, JPG, accept), JPG, `Accept: ${accept}`);
  }
});

test('q=0 refuses a format; an invalid weight is no evidence; a range named twice keeps its refusal', () => {
  const both = load('avif,webp');
  assert.equal(served(both, JPG, 'image/avif;q=0,image/webp,*/*'), '/thumbnails/images/cat.jpg/640.webp');
  assert.equal(served(both, JPG, 'image/avif;q=0.000,image/webp;q=0,image/*'), JPG);
  assert.equal(served(both, JPG, 'image/avif; q=0 , image/webp; q=0.0'), JPG);
  assert.equal(served(both, JPG, 'image/avif;q=abc,image/webp'), '/thumbnails/images/cat.jpg/640.webp');
  assert.equal(served(both, JPG, 'image/avif;q=1.5,image/webp;q=0.5'), '/thumbnails/images/cat.jpg/640.webp');
  assert.equal(served(both, JPG, 'image/avif;q=0.5000'), JPG);
  assert.equal(served(both, JPG, 'image/avif,image/avif;q=0'), JPG);
  assert.equal(served(both, JPG, 'image/avif;q=0.001'), '/thumbnails/images/cat.jpg/640.avif');
});

test('weights decide: the preferred format wins, a tie goes to AVIF, a preferred primary stays', () => {
  const both = load('avif,webp');
  assert.equal(served(both, JPG, 'image/webp,image/avif;q=0.5'), '/thumbnails/images/cat.jpg/640.webp');
  assert.equal(served(both, JPG, 'image/webp;q=0.9,image/avif;q=0.9'), '/thumbnails/images/cat.jpg/640.avif');
  assert.equal(served(both, JPG, 'image/jpeg,image/avif;q=0.5'), JPG);
  assert.equal(served(both, JPG, 'image/*,image/webp;q=0.5'), JPG);
  assert.equal(served(both, JPG, 'image/jpeg;q=0.5,image/*,image/webp;q=0.6'), '/thumbnails/images/cat.jpg/640.webp');
  // The primary's own type is more specific than image/*: its low weight is what counts.
  assert.equal(served(both, '/thumbnails/a.png/320.png', 'image/jpeg,image/avif;q=0.5'), '/thumbnails/a.png/320.avif');
});

test('Accept is read case-insensitively, with spaces and parameters, over several header lines', () => {
  const both = load('avif,webp');
  assert.equal(served(both, JPG, ' IMAGE/AVIF ; Q=0.9 ; level=1 , Image/WebP;q=0.8'), '/thumbnails/images/cat.jpg/640.avif');
  const lines = { headers: { accept: { value: 'image/png', multiValue: [{ value: 'image/png' }, { value: 'image/webp' }] } } };
  const event = viewerRequest(JPG, undefined, lines);
  assert.equal(both(event).uri, '/thumbnails/images/cat.jpg/640.webp');
});

test('each configuration rewrites only to the renditions the processor writes', () => {
  const expected = {
    none: { chrome: JPG, safari15: JPG },
    webp: { chrome: '/thumbnails/images/cat.jpg/640.webp', safari15: '/thumbnails/images/cat.jpg/640.webp' },
    avif: { chrome: '/thumbnails/images/cat.jpg/640.avif', safari15: JPG },
    'avif,webp': { chrome: '/thumbnails/images/cat.jpg/640.avif', safari15: '/thumbnails/images/cat.jpg/640.webp' },
  };
  for (const formats of FORMATS) {
    const handler = load(formats);
    for (const [browser, uri] of Object.entries(expected[formats])) {
      assert.equal(served(handler, JPG, ACCEPT[browser]), uri, `ThumbnailFormats=${formats}, ${browser}`);
    }
  }
});

test('a PNG (transparency) becomes AVIF or WebP; a GIF (animation) becomes WebP only', () => {
  const both = load('avif,webp');
  assert.equal(served(both, '/thumbnails/logo.png/160.png', ACCEPT.chrome), '/thumbnails/logo.png/160.avif');
  assert.equal(served(both, '/thumbnails/logo.png/160.png', ACCEPT.safari15), '/thumbnails/logo.png/160.webp');
  assert.equal(served(both, '/thumbnails/spin.gif/320.gif', ACCEPT.chrome), '/thumbnails/spin.gif/320.webp');
  assert.equal(served(both, '/thumbnails/spin.gif/320.gif', 'image/avif'), '/thumbnails/spin.gif/320.gif');
  assert.equal(served(load('avif'), '/thumbnails/spin.gif/320.gif', ACCEPT.chrome), '/thumbnails/spin.gif/320.gif');
  assert.equal(served(load('webp'), '/thumbnails/spin.gif/320.gif', ACCEPT.firefox), '/thumbnails/spin.gif/320.webp');
});

test('every other path is left as it came', () => {
  const both = load('avif,webp');
  const untouched = [
    '/images/cat.jpg',
    '/images/cat.jpg/640.jpg',
    '/thumbnailsx/cat.jpg/640.jpg',
    '/thumbnails/640.jpg',
    '/thumbnails/cat.jpg',
    '/thumbnails/cat.jpg/',
    '/thumbnails/cat.jpg/large.jpg',
    '/thumbnails/cat.jpg/640.jpeg',
    '/thumbnails/cat.jpg/640.JPG',
    '/thumbnails/cat.jpg/640.webp',
    '/thumbnails/cat.jpg/640.avif',
    '/thumbnails/cat.jpg/640',
    '/thumbnails/cat.jpg/640.jpg/',
    '/thumbnails/cat.jpg/123456.jpg',
    '/thumbnails/cat.jpg/-1.jpg',
    '/thumbnails/cat.jpg/640.constructor',
    '/thumbnails/cat.jpg/640.__proto__',
    '/Thumbnails/cat.jpg/640.jpg',
    '/',
  ];
  for (const uri of untouched) assert.equal(served(both, uri, ACCEPT.chrome), uri);
});

test('the rest of the path is kept byte for byte (percent-encoding, nested keys, other prefixes)', () => {
  const both = load('avif,webp');
  assert.equal(served(both, '/thumbnails/images/cat%20photo%2B1.jpg/640.jpg', ACCEPT.chrome),
    '/thumbnails/images/cat%20photo%2B1.jpg/640.avif');
  assert.equal(served(both, '/thumbnails/a.jpg/b.png/1280.png', ACCEPT.chrome), '/thumbnails/a.jpg/b.png/1280.avif');
  const media = load('webp', 'media/thumbs/');
  assert.equal(served(media, '/media/thumbs/x.jpg/640.jpg', ACCEPT.chrome), '/media/thumbs/x.jpg/640.webp');
  assert.equal(served(media, JPG, ACCEPT.chrome), JPG);
});

test('the query string is left alone (it is not part of the URI)', () => {
  const both = load('avif,webp');
  const querystring = { v: { value: '2' }, tag: { value: 'a', multiValue: [{ value: 'a' }, { value: 'b' }] } };
  const event = viewerRequest(JPG, ACCEPT.chrome, { querystring, cookies: { session: { value: 'x' } } });
  const request = both(event);
  assert.equal(request.uri, '/thumbnails/images/cat.jpg/640.avif');
  assert.deepEqual(request.querystring, structuredClone(querystring));
  assert.equal(served(both, '/images/cat.jpg', ACCEPT.chrome, { querystring }), '/images/cat.jpg');
});

test('a request costs microseconds (CloudFront allows about 1 ms of compute)', (t) => {
  const fn = deploy({ RegionalOrigins: '1:eu-central-1,2:ap-southeast-1,3:us-east-1,4:sa-east-1', ViewerRoutes: 'JP=domestic' });
  const runs = 20000;
  const started = process.hrtime.bigint();
  for (let i = 0; i < runs; i++) {
    fn.handler(viewerRequest(JPG, ACCEPT.safari, { headers: { 'cloudfront-viewer-country': { value: 'BR' } } }));
    fn.calls.length = 0;
  }
  const micros = Number(process.hrtime.bigint() - started) / 1000 / runs;
  t.diagnostic(`${micros.toFixed(2)} us a request (Safari's Accept, both formats, four regions, event built included)`);
  assert.ok(micros < 100, `${micros} us a request`);
});
