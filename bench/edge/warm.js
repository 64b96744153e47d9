'use strict';
// Warm measurements of one handler in one process (one warm sandbox): per-call wall time of the
// handler, with the bare SQS round trip measured alongside. Writes raw samples (ms) as JSON.
//
//   node warm.js HANDLER warm        EVENTS_JSON OUT_JSON ITERATIONS
//   node warm.js HANDLER unreachable EVENTS_JSON OUT_JSON ITERATIONS
const fs = require('node:fs');
const sqs = require('./sqs');

const [handlerPath, mode, eventsPath, outPath, iterationsArg] = process.argv.slice(2);
const iterations = Number(iterationsArg);
const events = JSON.parse(fs.readFileSync(eventsPath, 'utf8'));
const { handler } = require(handlerPath);

const now = () => process.hrtime.bigint();
const ms = (start) => Number(now() - start) / 1e6;

async function timed(event) {
  const start = now();
  const reply = await handler(event);
  const elapsed = ms(start);
  if (!reply || typeof reply.uri !== 'string') throw new Error(`bad reply ${JSON.stringify(reply)}`);
  return elapsed;
}

// Calls with a fresh copy of `event` each time (a handler may change the request it hands back),
// copied outside the timed part.
async function series(event, count, warmup) {
  const copies = Array.from({ length: count + warmup }, () => structuredClone(event));
  const samples = [];
  for (let i = 0; i < copies.length; i++) {
    const elapsed = await timed(copies[i]);
    if (i >= warmup) samples.push(elapsed);
  }
  return samples;
}

async function rawSend(endpoint, queueUrl, body) {
  const start = now();
  await sqs.call(endpoint, 'SendMessage', { QueueUrl: queueUrl, MessageBody: body });
  return ms(start);
}

async function warm() {
  const out = {};
  out.pass_through = await series(events.pass, iterations * 10, 2000);
  out.marked_no_send = await series(events.post, iterations * 2, 500);
  // The send path: the handler's call, and a bare SendMessage of the same size over a kept-alive
  // connection, in alternating order.
  const endpoint = process.env.AWS_ENDPOINT_URL;
  const body = events.message_body;
  out.send_total = [];
  out.send_round_trip = [];
  const warmup = 20;
  for (let i = 0; i < iterations + warmup; i++) {
    if (i % 100 === 0) await sqs.drain(endpoint, events.queue_url);
    const event = structuredClone(events.send);
    let total;
    let trip;
    if (i % 2 === 0) {
      total = await timed(event);
      trip = await rawSend(endpoint, events.queue_url, body);
    } else {
      trip = await rawSend(endpoint, events.queue_url, body);
      total = await timed(event);
    }
    if (i >= warmup) {
      out.send_total.push(total);
      out.send_round_trip.push(trip);
    }
  }
  await sqs.drain(endpoint, events.queue_url);
  return out;
}

async function unreachable() {
  // Every call, the first (cold client) included.
  const samples = [];
  for (let i = 0; i < iterations; i++) samples.push(await timed(structuredClone(events.send)));
  return { send_total: samples };
}

(mode === 'warm' ? warm() : unreachable()).then(
  (out) => {
    fs.writeFileSync(outPath, JSON.stringify(out));
    process.exit(0);
  },
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
