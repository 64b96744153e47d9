// sharp (libvips) peer of the thumbnail benchmark: one file, four renditions, single-threaded.
//   node sharp_bench.js typical|fastest FILE ITERATIONS
// typical: one sharp call per rendition (each decodes, with libvips' own shrink-on-load).
// fastest: decode once shrunk on load to the largest rendition, then the others from that raw image.
'use strict';
const fs = require('fs');
const path = require('path');
const sharp = require('sharp');

sharp.concurrency(1);
sharp.cache(false);
sharp.simd(true);

const WIDTHS = [160, 320, 640, 1280];
const QUALITY = 80;

function encode(pipeline, alpha) {
  return alpha ? pipeline.png() : pipeline.jpeg({ quality: QUALITY });
}

async function typical(input, alpha) {
  const outputs = [];
  for (const width of WIDTHS) {
    const { data, info } = await encode(
      sharp(input).rotate().resize({ width, withoutEnlargement: true }),
      alpha,
    ).toBuffer({ resolveWithObject: true });
    outputs.push({ width: info.width, height: info.height, bytes: data.length });
  }
  return outputs;
}

async function fastest(input, alpha) {
  const largest = WIDTHS[WIDTHS.length - 1];
  const raw = await sharp(input)
    .rotate()
    .resize({ width: largest, withoutEnlargement: true })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const options = { raw: { width: raw.info.width, height: raw.info.height, channels: raw.info.channels } };
  const outputs = [];
  for (const width of WIDTHS) {
    let pipeline = sharp(raw.data, options);
    if (width < raw.info.width) pipeline = pipeline.resize({ width });
    const { data, info } = await encode(pipeline, alpha).toBuffer({ resolveWithObject: true });
    outputs.push({ width: info.width, height: info.height, bytes: data.length });
  }
  return outputs;
}

async function main() {
  const [mode, file, iterationsText] = process.argv.slice(2);
  const run = { typical, fastest }[mode];
  if (!run || !file) throw new Error('usage: sharp_bench.js typical|fastest FILE ITERATIONS');
  const iterations = Number(iterationsText || 10);
  const input = fs.readFileSync(file);
  const alpha = (await sharp(input).stats()).isOpaque === false;
  const outputs = await run(input, alpha);
  const times = [];
  const cpuTimes = [];
  for (let i = 0; i < iterations; i++) {
    const started = process.hrtime.bigint();
    const cpuStarted = process.cpuUsage();
    await run(input, alpha);
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
    const cpu = process.cpuUsage(cpuStarted);
    cpuTimes.push((cpu.user + cpu.system) / 1000);
  }
  console.log(JSON.stringify({
    tool: 'sharp',
    mode,
    version: sharp.versions.sharp,
    file: path.basename(file),
    times_ms: times,
    cpu_ms: cpuTimes,
    renditions: outputs.map((o) => ({ ...o, format: alpha ? 'png' : 'jpg' })),
    peak_rss_kb: process.resourceUsage().maxRSS,
  }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
