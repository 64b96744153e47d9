'use strict';
// The edge hook's benchmark: the Rust hook (the deployable package: index.js + the addon) against
// a plain Node.js peer with @aws-sdk/client-sqs (peer/), each as overhead over an empty handler
// (empty/), on Node 22 and the local stack's SQS. Run through bench/edge/run.sh.
//
//   node measure.js [--quick] --rust PACKAGE_DIR --zip ZIP --out RESULTS_JSON
//
// Cold init: process start to the first response, a new process per sample. Warm: many calls in
// one process, in rounds (a new process each) that alternate between the handlers. The send path is split into the bare SQS round trip (a SendMessage of the same
// size over a kept-alive connection, measured alongside) and the handler's own time (the rest).
// With SQS unreachable (a port that refuses, a port that never answers), every call is timed.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const sqs = require('./sqs');

const args = process.argv.slice(2);
const option = (name) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
};
const quick = args.includes('--quick');
const rustDir = option('--rust');
const zipPath = option('--zip');
const outPath = option('--out');
if (!rustDir || !zipPath || !outPath) throw new Error('usage: measure.js [--quick] --rust DIR --zip ZIP --out FILE');

const ROOT = path.resolve(__dirname, '..', '..');
const HANDLERS = {
  empty: path.join(__dirname, 'empty', 'index.js'),
  rust: path.join(path.resolve(rustDir), 'index.js'),
  peer: path.join(__dirname, 'peer', 'index.js'),
};
const COLD_ROUNDS = quick ? 3 : 20;
const WARM_ITERATIONS = quick ? 100 : 1000;
// Warm processes per handler: the handlers take turns, so that a busy neighbour slows each alike.
const WARM_ROUNDS = quick ? 2 : 5;
const UNREACHABLE_ITERATIONS = quick ? 5 : 20;
const BUDGET_MS = 300;
const endpoint = process.env.AWS_ENDPOINT_URL;
if (!endpoint) throw new Error('AWS_ENDPOINT_URL is not set: run through bench/edge/run.sh');

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-bench-'));

function stats(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  const round = (x) => Math.round(x * 10000) / 10000;
  return {
    n: sorted.length,
    min: round(sorted[0]),
    p50: round(at(0.5)),
    p90: round(at(0.9)),
    p99: round(at(0.99)),
    max: round(sorted[sorted.length - 1]),
    mean: round(sorted.reduce((a, b) => a + b, 0) / sorted.length),
  };
}

// The distribution at every percentile, 0 to 100: enough to draw it, far smaller than the samples.
function percentiles(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  return Array.from({ length: 101 }, (_, q) => {
    const x = sorted[Math.min(sorted.length - 1, Math.floor((q / 100) * sorted.length))];
    return Math.round(x * 10000) / 10000;
  });
}

function load(name) {
  return JSON.parse(fs.readFileSync(path.join(ROOT, 'events', `${name}.json`), 'utf8'));
}

function marked(name, queueUrl) {
  const event = load(name);
  const headers = event.Records[0].cf.request.origin.custom.customHeaders;
  headers['x-backfill-queue-url'] = [{ key: 'X-Backfill-Queue-Url', value: queueUrl }];
  // Every call sends: what is measured is the send path, not the repeat filter.
  headers['x-backfill-repeat-window'] = [{ key: 'X-Backfill-Repeat-Window', value: '0s' }];
  return event;
}

function run(command, argv, { env = process.env, fd3 = false } = {}) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const stdio = ['ignore', 'ignore', 'pipe'];
    if (fd3) stdio.push('pipe');
    const child = spawn(command, argv, { env, stdio });
    let stderr = '';
    let answered;
    child.stderr.on('data', (d) => (stderr += d));
    if (fd3) {
      child.stdio[3].once('data', (d) => {
        answered = Number(process.hrtime.bigint() - started) / 1e6;
        if (!String(d).startsWith('ok')) reject(new Error(`cold start answered ${d}`));
      });
    }
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`${argv.join(' ')} exited ${code}: ${stderr}`));
      else resolve(answered);
    });
  });
}

async function cold(eventFile) {
  const samples = { empty: [], rust: [], peer: [] };
  const order = ['empty', 'rust', 'peer'];
  for (let round = 0; round < COLD_ROUNDS; round++) {
    // Rotate the order, so that no handler always follows the same one.
    for (let i = 0; i < order.length; i++) {
      const name = order[(round + i) % order.length];
      samples[name].push(await run(process.execPath, [path.join(__dirname, 'cold.js'), HANDLERS[name], eventFile], { fd3: true }));
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, stats(v)]));
}

async function warm(name, eventsFile, mode, iterations, env) {
  const out = path.join(work, `${name}-${mode}.json`);
  await run(process.execPath, [path.join(__dirname, 'warm.js'), HANDLERS[name], mode, eventsFile, out, String(iterations)], { env });
  return JSON.parse(fs.readFileSync(out, 'utf8'));
}

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Accepts connections and never answers: an SQS endpoint that hangs.
function hangingServer() {
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: server.address().port,
        close: () => {
          for (const s of sockets) s.destroy();
          server.close();
        },
      }),
    );
  });
}

const round = (x) => Math.round(x * 10000) / 10000;

async function main() {
  const loadAtStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const { QueueUrl: queueUrl } = await sqs.call(endpoint, 'CreateQueue', { QueueName: `edge-bench-${process.pid}` });
  const hanging = await hangingServer();
  try {
    const send = marked('origin-request-domestic', queueUrl);
    const events = {
      pass: load('origin-request-s3'),
      post: marked('origin-request-post', queueUrl),
      send,
      queue_url: queueUrl,
      // The message the hook sends for this event: the bare round trip sends the same bytes.
      message_body: JSON.stringify({
        version: 1,
        bucket: 'overseas-origin',
        key: 'images/cat.jpg',
        origin: { protocol: 'https', host: 'www.example.com', port: 443, path: '' },
        uri: '/images/cat.jpg',
        request_id: send.Records[0].cf.config.requestId,
        enqueued_at: new Date().toISOString(),
        trigger: 'origin-request',
      }),
    };
    const eventsFile = path.join(work, 'events.json');
    fs.writeFileSync(eventsFile, JSON.stringify(events));
    const sendFile = path.join(work, 'send.json');
    fs.writeFileSync(sendFile, JSON.stringify(send));
    const passFile = path.join(work, 'pass.json');
    fs.writeFileSync(passFile, JSON.stringify(events.pass));

    process.stderr.write('edge bench: cold starts\n');
    const coldSend = await cold(sendFile);
    const coldPass = await cold(passFile);
    await sqs.drain(endpoint, queueUrl);

    process.stderr.write('edge bench: warm calls\n');
    const raw = { empty: {}, rust: {}, peer: {} };
    const order = Object.keys(raw);
    for (let round = 0; round < WARM_ROUNDS; round++) {
      for (let i = 0; i < order.length; i++) {
        const name = order[(round + i) % order.length];
        const out = await warm(name, eventsFile, 'warm', Math.ceil(WARM_ITERATIONS / WARM_ROUNDS), process.env);
        for (const [series, samples] of Object.entries(out)) (raw[name][series] ||= []).push(...samples);
      }
    }

    process.stderr.write('edge bench: SQS unreachable\n');
    const refusedPort = await freePort();
    const unreachable = { rust: {}, peer: {} };
    // Each kind of outage for one handler, then the other, before the next kind.
    for (const [kind, port] of [
      ['refused', refusedPort],
      ['hanging', hanging.port],
    ]) {
      const down = `http://127.0.0.1:${port}`;
      // The JavaScript SDK sends to the queue URL's host, the Rust SDK to its endpoint: both
      // point at the SQS that is down.
      const downFile = path.join(work, `events-${kind}.json`);
      fs.writeFileSync(downFile, JSON.stringify({ ...events, send: marked('origin-request-domestic', `${down}/123456789012/backfill`) }));
      const env = { ...process.env, AWS_ENDPOINT_URL: down };
      for (const name of ['rust', 'peer']) {
        const out = await warm(name, downFile, 'unreachable', UNREACHABLE_ITERATIONS, env);
        unreachable[name][kind] = stats(out.send_total);
      }
    }

    const warmStats = {};
    const warmPercentiles = {};
    for (const [name, r] of Object.entries(raw)) {
      warmStats[name] = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, stats(v)]));
      warmPercentiles[name] = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, percentiles(v)]));
    }
    const overhead = (name, which, q) => round(warmStats[name][which][q] - warmStats.empty[which][q]);
    const sendSplit = (name) => {
      const s = warmStats[name];
      const trip = s.send_round_trip.p50;
      return {
        total_p50: s.send_total.p50,
        round_trip_p50: trip,
        // What the implementation adds to the bare round trip (and to an empty handler's call).
        handler_p50: round(s.send_total.p50 - trip - warmStats.empty.pass_through.p50),
        handler_mean: round(s.send_total.mean - s.send_round_trip.mean - warmStats.empty.pass_through.mean),
      };
    };
    const coldOverhead = (c, name) => round(c[name].p50 - c.empty.p50);
    const results = {
      date: new Date().toISOString(),
      quick,
      machine: { cpus: os.cpus().length, cpu: os.cpus()[0].model, node: process.version, load_average_at_start: loadAtStart },
      budget_ms: BUDGET_MS,
      package: {
        zip_bytes: fs.statSync(zipPath).size,
        addon_bytes: fs.statSync(path.join(rustDir, 'origin_request.node')).size,
      },
      cold_init_ms: {
        send_event: coldSend,
        pass_through_event: coldPass,
        overhead_p50: {
          send_event: { rust: coldOverhead(coldSend, 'rust'), peer: coldOverhead(coldSend, 'peer') },
          pass_through_event: { rust: coldOverhead(coldPass, 'rust'), peer: coldOverhead(coldPass, 'peer') },
        },
      },
      warm_rounds: WARM_ROUNDS,
      warm_ms: warmStats,
      warm_percentiles_ms: warmPercentiles,
      pass_through_overhead_ms: {
        rust: { p50: overhead('rust', 'pass_through', 'p50'), p99: overhead('rust', 'pass_through', 'p99') },
        peer: { p50: overhead('peer', 'pass_through', 'p50'), p99: overhead('peer', 'pass_through', 'p99') },
      },
      marked_no_send_overhead_ms: {
        rust: { p50: overhead('rust', 'marked_no_send', 'p50'), p99: overhead('rust', 'marked_no_send', 'p99') },
        peer: { p50: overhead('peer', 'marked_no_send', 'p50'), p99: overhead('peer', 'marked_no_send', 'p99') },
      },
      send_path_ms: { rust: sendSplit('rust'), peer: sendSplit('peer') },
      unreachable_ms: unreachable,
    };
    const c = results.cold_init_ms.overhead_p50.send_event;
    const worst = (name) => Math.max(unreachable[name].refused.max, unreachable[name].hanging.max);
    results.ratios = {
      cold_init_overhead_rust_over_peer: round(c.rust / c.peer),
      send_handler_rust_over_peer: round(results.send_path_ms.rust.handler_p50 / results.send_path_ms.peer.handler_p50),
    };
    results.targets = {
      cold_init_overhead_at_most_a_quarter_of_the_peers: c.rust <= c.peer / 4,
      pass_through_p99_under_0_1_ms: warmStats.rust.pass_through.p99 < 0.1,
      send_handler_time_at_most_the_peers: results.send_path_ms.rust.handler_p50 <= results.send_path_ms.peer.handler_p50,
      unreachable_within_budget: worst('rust') <= BUDGET_MS,
    };
    // Beyond the budget, if at all: the timer fires at the budget less the hook's 5 ms margin, so
    // what is left is scheduling delay on a busy machine.
    results.unreachable_rust_max_over_budget_ms = round(Math.max(0, worst('rust') - BUDGET_MS));
    fs.writeFileSync(outPath, JSON.stringify(results, null, 2) + '\n');
    printSummary(results);
  } finally {
    hanging.close();
    await sqs.call(endpoint, 'DeleteQueue', { QueueUrl: queueUrl });
    sqs.agent.destroy();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function printSummary(r) {
  const w = r.warm_ms;
  const lines = [
    `| measure (ms) | empty | Rust hook | Node peer |`,
    `| --- | ---: | ---: | ---: |`,
    `| cold init, send event, p50 | ${r.cold_init_ms.send_event.empty.p50} | ${r.cold_init_ms.send_event.rust.p50} | ${r.cold_init_ms.send_event.peer.p50} |`,
    `| cold init overhead, send event | | ${r.cold_init_ms.overhead_p50.send_event.rust} | ${r.cold_init_ms.overhead_p50.send_event.peer} |`,
    `| cold init, pass-through event, p50 | ${r.cold_init_ms.pass_through_event.empty.p50} | ${r.cold_init_ms.pass_through_event.rust.p50} | ${r.cold_init_ms.pass_through_event.peer.p50} |`,
    `| warm pass-through (S3 attempt), p50 / p99 | ${w.empty.pass_through.p50} / ${w.empty.pass_through.p99} | ${w.rust.pass_through.p50} / ${w.rust.pass_through.p99} | ${w.peer.pass_through.p50} / ${w.peer.pass_through.p99} |`,
    `| warm marked origin, no send (POST), p50 / p99 | | ${w.rust.marked_no_send.p50} / ${w.rust.marked_no_send.p99} | ${w.peer.marked_no_send.p50} / ${w.peer.marked_no_send.p99} |`,
    `| warm send path total, p50 | | ${r.send_path_ms.rust.total_p50} | ${r.send_path_ms.peer.total_p50} |`,
    `| bare SQS round trip, p50 | | ${r.send_path_ms.rust.round_trip_p50} | ${r.send_path_ms.peer.round_trip_p50} |`,
    `| send path handler time (round trip excluded), p50 | | ${r.send_path_ms.rust.handler_p50} | ${r.send_path_ms.peer.handler_p50} |`,
    `| SQS refusing, p50 / max | | ${r.unreachable_ms.rust.refused.p50} / ${r.unreachable_ms.rust.refused.max} | ${r.unreachable_ms.peer.refused.p50} / ${r.unreachable_ms.peer.refused.max} |`,
    `| SQS hanging (budget ${r.budget_ms}), p50 / max | | ${r.unreachable_ms.rust.hanging.p50} / ${r.unreachable_ms.rust.hanging.max} | ${r.unreachable_ms.peer.hanging.p50} / ${r.unreachable_ms.peer.hanging.max} |`,
  ];
  console.log(lines.join('\n'));
  console.log(`\nratios: ${JSON.stringify(r.ratios)}`);
  console.log(`targets: ${JSON.stringify(r.targets)}`);
  console.log(`package zip: ${r.package.zip_bytes} bytes`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
