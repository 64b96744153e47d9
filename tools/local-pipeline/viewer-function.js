'use strict';
// The edge simulator's viewer-request CloudFront Function (tools/local-pipeline/src/viewer.rs): the
// function's real code loaded once by tests/lib/cloudfront-function.js, then one invocation per
// line: {"id", "event"} on stdin, {"id", "result", "calls"} (or {"id", "error"}) on stdout.
//
//   node viewer-function.js LOADER CODE '{"parameters": {...}, "origins": [...]}'
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');

const [loaderPath, codePath, configJson] = process.argv.slice(2);
if (!configJson) {
  process.stderr.write('usage: viewer-function.js LOADER CODE CONFIG_JSON\n');
  process.exit(2);
}
const { load } = require(path.resolve(loaderPath));
const config = JSON.parse(configJson);
// CloudFront Functions stop a function that runs too long; here a generous bound keeps one stuck
// invocation from hanging the simulator.
const fn = load(fs.readFileSync(codePath, 'utf8'), config.parameters, {
  origins: config.origins,
  timeoutMs: 1000,
  filename: codePath,
});

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on('line', (line) => {
  let id = null;
  let reply;
  try {
    const message = JSON.parse(line);
    id = message.id;
    const { request, calls } = fn.invoke(message.event);
    reply = { id, result: request, calls };
  } catch (error) {
    reply = { id, error: String(error && error.stack ? error.stack : error) };
  }
  process.stdout.write(JSON.stringify(reply) + '\n');
});
