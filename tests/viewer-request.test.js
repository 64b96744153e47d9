'use strict';
// The thumbnail format function (functions/thumbnail-format/thumbnail-format.js), run by node --test
// (tests/thumbnail-format, on Node 22) the way CloudFront runs it: the code the template deploys
// (its Fn::Sub filled in with the edge stack's parameters) evaluated on its own, in a context with
// nothing but the language's built-ins, its handler given CloudFront Functions viewer-request events.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const test = require('node:test');
const vm = require('node:vm');

const FILE = path.join(__dirname, '..', 'functions', 'thumbnail-format', 'thumbnail-format.js');
const SOURCE = fs.readFileSync(FILE, 'utf8');
// The template's copy (the Fn::Sub's text), extracted by tests/thumbnail-format.
const TEMPLATE_CODE = process.env.THUMBNAIL_TEMPLATE_CODE;

// CloudFront Functions quotas: "Maximum function size" 10 KB. The longest prefix the edge stack's
// ThumbnailPrefix accepts is 202 characters.
const MAX_FUNCTION_BYTES = 10 * 1024;
const LONGEST_PREFIX = 'a'.repeat(201) + '/';
const PLACEHOLDERS = ['ThumbnailPrefix', 'ThumbnailFormats'];
const FORMATS = ['none', 'webp', 'avif', 'avif,webp'];

// What Fn::Sub does to the code: every ${Name} replaced by the parameter's value (an unknown name
// fails the deploy, so every placeholder must be a parameter given here).
function render(code, parameters) {
  return code.replace(/\$\{([^}]*)\}/g, (match, name) => {
    assert.ok(Object.hasOwn(parameters, name), `the code names \${${name}}, which is no parameter given to it`);
    return parameters[name];
  });
}

// The handler of the rendered code, evaluated alone as CloudFront does: no require, no process, no
// timers, no Buffer; the built-ins of the language only.
function load(formats, prefix = 'thumbnails/') {
  const context = vm.createContext({});
  new vm.Script(render(SOURCE, { ThumbnailPrefix: prefix, ThumbnailFormats: formats }), { filename: FILE }).runInContext(context);
  assert.equal(typeof context.handler, 'function');
  return context.handler;
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

test('the template deploys this file: its FunctionCode is the file, verbatim', () => {
  assert.ok(TEMPLATE_CODE, 'THUMBNAIL_TEMPLATE_CODE names the template\'s copy (run by tests/thumbnail-format)');
  assert.equal(fs.readFileSync(TEMPLATE_CODE, 'utf8'), SOURCE);
});

test('the code holds no placeholder but the two parameters, and fits the 10 KB quota', (t) => {
  const names = [...SOURCE.matchAll(/\$\{([^}]*)\}/g)].map((m) => m[1]);
  assert.deepEqual([...new Set(names)].sort(), [...PLACEHOLDERS].sort());
  for (const formats of FORMATS) {
    const bytes = Buffer.byteLength(render(SOURCE, { ThumbnailPrefix: LONGEST_PREFIX, ThumbnailFormats: formats }));
    assert.ok(bytes <= MAX_FUNCTION_BYTES, `${bytes} bytes with ThumbnailFormats=${formats}`);
  }
  const bytes = Buffer.byteLength(render(SOURCE, { ThumbnailPrefix: 'thumbnails/', ThumbnailFormats: 'avif,webp' }));
  t.diagnostic(`function size: ${bytes} bytes as deployed with the defaults (quota ${MAX_FUNCTION_BYTES})`);
});

test('the code uses ES 5.1 only (all of it supported by cloudfront-js-2.0), and no module', () => {
  // Its comments are whole lines of //.
  const code = SOURCE.replace(/^\s*\/\/.*$/gm, '');
  // Modules the runtime offers are crypto, querystring, buffer and cloudfront; this code needs none.
  const refused = {
    'a module (require)': /\brequire\s*\(/,
    'a module (import)': /\bimport\b/,
    'dynamic code (eval)': /\beval\s*\(/,
    'dynamic code (Function)': /\bnew\s+Function\b/,
    'timers (none at the edge)': /\bset(Timeout|Interval|Immediate)\b/,
    'the network (none at the edge)': /\bfetch\s*\(/,
    'Node.js globals': /\b(process|global|globalThis|Buffer|__dirname)\b/,
    'let or const (runtime 2.0 only, and this file says ES 5.1)': /\b(let|const)\s/,
    'an arrow function': /=>/,
    'a template literal (and ${ is Fn::Sub\'s)': /`/,
    'a class': /\bclass\s/,
    'async or await': /\b(async|await)\b/,
    'optional chaining or nullish coalescing': /\?\.|\?\?/,
    'spread or rest': /\.\.\./,
  };
  for (const [what, pattern] of Object.entries(refused)) {
    assert.doesNotMatch(code, pattern, `the function uses ${what}`);
  }
  assert.match(code, /^function handler\(event\) \{$/m, 'a top-level function named handler');
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
  const both = load('avif,webp');
  const runs = 20000;
  const started = process.hrtime.bigint();
  for (let i = 0; i < runs; i++) both(viewerRequest(JPG, ACCEPT.safari));
  const micros = Number(process.hrtime.bigint() - started) / 1000 / runs;
  t.diagnostic(`${micros.toFixed(2)} us a request (Safari's Accept, both formats, event built included)`);
  assert.ok(micros < 100, `${micros} us a request`);
});
