'use strict';
// Lambda@Edge runs only Node.js and Python: the hook is Rust (src/), loaded as a Node-API addon.
// This file only decides whether the request concerns the hook at all, and makes sure that
// nothing the hook does can turn a viewer's request into a 502.
const core = require('./origin_request.node');

// Present on the domestic origin's custom headers only (see docs/edge.md).
const MARKER = 'x-backfill-queue-url';
const PREFIX = 'x-backfill-';

exports.handler = async (event) => {
  const cf = event?.Records?.[0]?.cf;
  const type = String(cf?.config?.eventType ?? '');
  const given = type.endsWith('-response') && cf.response ? cf.response : cf?.request;
  const headers = cf?.request?.origin?.custom?.customHeaders;
  // S3-origin attempts and unmarked origins pass without crossing into Rust.
  if (!headers?.[MARKER]) return given;
  try {
    return JSON.parse(await core.handle(JSON.stringify(event)));
  } catch (err) {
    console.error(JSON.stringify({ level: 'ERROR', message: 'edge hook failed; request let through', error: String(err) }));
    if (given === cf.request) {
      for (const name of Object.keys(headers)) if (name.startsWith(PREFIX)) delete headers[name];
    }
    return given;
  }
};
