'use strict';
// Runs a viewer-request CloudFront Function (runtime cloudfront-js-2.0) under Node the way CloudFront
// does: the code as the template deploys it (its Fn::Sub filled in), evaluated alone in a context
// with the language's built-ins only, its `import cf from 'cloudfront';` bound to a stub of the
// origin modification helpers (CloudFront Developer Guide, "Helper methods for origin
// modification") that records each call.
//
//   const { load, render, IMPORT } = require('./lib/cloudfront-function');
//   const fn = load(code, parameters, { origins: ['overseas-bucket', ...], timeoutMs: 50 });
//   const { request, calls, origin } = fn.invoke(event);
//
// load(code, parameters, options) -> function
//   code: the file's text, whose first line must be IMPORT exactly; parameters: { Name: value } for
//   every ${Name} in it (render). Options: origins, the origin ids the distribution defines (a call
//   naming another throws inside the function, as an unknown id fails at the edge; default: any
//   id); timeoutMs, how long loading and each invocation may run (default: no limit); filename, for
//   stack traces. Throws when the code does not load or defines no handler. Each load has its own
//   context and record, kept between invocations as CloudFront may keep it: load once per
//   configuration, then invoke per request, from a long-running process too.
// function.invoke(event) -> { request, calls, origin }
//   request: what the handler returned; calls: this invocation's helper calls, each
//   { method, args } (args copied out as JSON); origin: where the request goes, null for the cache
//   behaviour's own origin, else { originId } or { originGroup: { originIds, failoverCriteria } }
//   (the last call wins). The handler may change event.request itself, as at the edge. A throw from
//   the handler (or a timeout) propagates.
// function.handler(event): the handler itself; its calls are appended to function.calls.
// function.code: the code as deployed; function.bytes: its size in UTF-8.
// render(code, parameters): what Fn::Sub does to the code (${!Name} is the literal ${Name}).
const vm = require('node:vm');

const IMPORT = "import cf from 'cloudfront';";

function render(code, parameters) {
  return code.replace(/\$\{(!?)([^}]*)\}/g, (match, literal, name) => {
    if (literal) return '${' + name + '}';
    if (!Object.hasOwn(parameters, name)) throw new Error(`the code names \${${name}}, which is no parameter given to it`);
    return String(parameters[name]);
  });
}

// The cloudfront module's origin helpers, recording into `calls`.
function stub(calls, origins) {
  const known = (id) => {
    if (typeof id !== 'string' || (origins && !origins.includes(id))) {
      throw new Error(`no origin ${JSON.stringify(id)} in the distribution`);
    }
  };
  const record = (method, args) => calls.push({ method, args: JSON.parse(JSON.stringify(args)) });
  return {
    selectRequestOriginById(originId) {
      known(originId);
      record('selectRequestOriginById', [originId]);
    },
    createRequestOriginGroup(group) {
      if (!group || !Array.isArray(group.originIds) || group.originIds.length !== 2) {
        throw new Error('createRequestOriginGroup: originIds must be two origin ids');
      }
      group.originIds.forEach(known);
      const codes = group.failoverCriteria && group.failoverCriteria.statusCodes;
      if (!Array.isArray(codes) || codes.length === 0 || !codes.every(Number.isInteger)) {
        throw new Error('createRequestOriginGroup: failoverCriteria.statusCodes must be status codes');
      }
      record('createRequestOriginGroup', [group]);
    },
    updateRequestOrigin(params) {
      record('updateRequestOrigin', [params]);
    },
  };
}

function originOf(calls) {
  const last = calls.filter((c) => c.method !== 'updateRequestOrigin').at(-1);
  if (!last) return null;
  return last.method === 'selectRequestOriginById' ? { originId: last.args[0] } : { originGroup: last.args[0] };
}

function load(code, parameters, options = {}) {
  if (code.split('\n', 1)[0] !== IMPORT) throw new Error(`the function's first line is not ${IMPORT}`);
  const deployed = render(code, parameters);
  const calls = [];
  const context = vm.createContext({ __cloudfront: stub(calls, options.origins) });
  // The import becomes a constant binding on the same line, so line numbers stay the file's.
  const body = 'const cf = __cloudfront; delete globalThis.__cloudfront;' + deployed.slice(IMPORT.length);
  const timeout = options.timeoutMs;
  new vm.Script(body, { filename: options.filename || 'cloudfront-function.js' }).runInContext(context, { timeout });
  if (typeof context.handler !== 'function') throw new Error('the function defines no handler');
  const call = new vm.Script('handler(__event)');
  const fn = {
    code: deployed,
    bytes: Buffer.byteLength(deployed),
    calls,
    handler(event) {
      if (timeout === undefined) return context.handler(event);
      context.__event = event;
      try {
        return call.runInContext(context, { timeout });
      } finally {
        delete context.__event;
      }
    },
    invoke(event) {
      const before = calls.length;
      const request = fn.handler(event);
      const these = calls.splice(before);
      return { request, calls: these, origin: originOf(these) };
    },
  };
  return fn;
}

module.exports = { IMPORT, load, render };
