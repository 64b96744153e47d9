'use strict';
// One cold start, as a new sandbox sees it: load the handler, answer one event, report on fd 3,
// exit. The parent times it from spawning this process.
const fs = require('node:fs');

const [handlerPath, eventPath] = process.argv.slice(2);
const { handler } = require(handlerPath);
handler(JSON.parse(fs.readFileSync(eventPath, 'utf8'))).then(
  (reply) => {
    fs.writeSync(3, reply && reply.uri ? 'ok\n' : 'bad reply\n');
    process.exit(0);
  },
  (err) => {
    fs.writeSync(3, `error ${err}\n`);
    process.exit(1);
  },
);
