// sharp (libvips) peer of the thumbnail benchmark: one file, four renditions, single-threaded.
//   node sharp_bench.js typical|fastest FILE ITERATIONS [--formats webp,avif] [--keep DIR]
//   node sharp_bench.js decode DIR
// typical: one sharp call per rendition (each decodes, with libvips' own shrink-on-load).
// fastest: decode once shrunk on load to the largest rendition, then the others from that raw image.
// Renditions have exactly the pipeline's sizes (its rounding: the height is rounded half up, never
// enlarged), JPEG (PNG for an image with transparency) at JPEG_QUALITY (80); --formats adds WebP
// (WEBP_QUALITY, 75) and/or AVIF (AVIF_QUALITY, 60; sharp's default effort) of each, from the same
// resized pixels. --keep writes the first run's renditions as DIR/{width}.{ext}.
// decode: writes DIR/{width}.avif.png beside each AVIF rendition (sRGB), for the score to read.
'use strict';
const fs = require('fs');
const path = require('path');
const sharp = require('sharp');

sharp.concurrency(1);
sharp.cache(false);
sharp.simd(true);

const WIDTHS = [160, 320, 640, 1280];
const quality = (name, fallback) => Number(process.env[name] || fallback);
const JPEG_QUALITY = quality('JPEG_QUALITY', 80);
const WEBP_QUALITY = quality('WEBP_QUALITY', 75);
const AVIF_QUALITY = quality('AVIF_QUALITY', 60);

// The pipeline's rendition size (functions/image-processor/src/rendition.rs, `fit`).
function fit([sourceWidth, sourceHeight], width) {
  const w = Math.max(1, Math.min(width, sourceWidth));
  const h = Math.floor((sourceHeight * w + Math.floor(sourceWidth / 2)) / sourceWidth);
  return [w, Math.min(Math.max(h, 1), sourceHeight)];
}

async function encodeAll(pipeline, alpha, formats, size) {
  const encoders = [alpha ? ['png', (p) => p.png()] : ['jpg', (p) => p.jpeg({ quality: JPEG_QUALITY })]];
  if (formats.includes('webp')) encoders.push(['webp', (p) => p.webp({ quality: WEBP_QUALITY })]);
  if (formats.includes('avif')) encoders.push(['avif', (p) => p.avif({ quality: AVIF_QUALITY })]);
  const outputs = [];
  for (const [format, encode] of encoders) {
    const { data, info } = await encode(encoders.length > 1 ? pipeline.clone() : pipeline)
      .toBuffer({ resolveWithObject: true });
    if (info.width !== size[0] || info.height !== size[1]) {
      throw new Error(`rendition ${info.width}x${info.height}, expected ${size.join('x')}`);
    }
    outputs.push({ width: info.width, height: info.height, format, bytes: data.length, data });
  }
  return outputs;
}

async function typical(input, source) {
  const outputs = [];
  for (const width of WIDTHS) {
    const [w, h] = fit(source.size, width);
    const pipeline = sharp(input).rotate().resize({ width: w, height: h, fit: 'fill' });
    outputs.push(...(await encodeAll(pipeline, source.alpha, source.formats, [w, h])));
  }
  return outputs;
}

async function fastest(input, source) {
  const [lw, lh] = fit(source.size, WIDTHS[WIDTHS.length - 1]);
  const raw = await sharp(input)
    .rotate()
    .resize({ width: lw, height: lh, fit: 'fill' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const options = { raw: { width: raw.info.width, height: raw.info.height, channels: raw.info.channels } };
  const outputs = [];
  for (const width of WIDTHS) {
    const [w, h] = fit(source.size, width);
    let pipeline = sharp(raw.data, options);
    if (w !== raw.info.width || h !== raw.info.height) pipeline = pipeline.resize({ width: w, height: h, fit: 'fill' });
    outputs.push(...(await encodeAll(pipeline, source.alpha, source.formats, [w, h])));
  }
  return outputs;
}

async function decode(dir) {
  for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.avif'))) {
    await sharp(path.join(dir, name)).toColourspace('srgb').png().toFile(path.join(dir, `${name}.png`));
  }
}

function options(args) {
  const parsed = { iterations: 10, formats: [], keep: null };
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--formats') parsed.formats = args[++i].split(',').filter(Boolean);
    else if (args[i] === '--keep') parsed.keep = args[++i];
    else parsed.iterations = Number(args[i]);
  }
  return parsed;
}

async function main() {
  const [mode, file, ...rest] = process.argv.slice(2);
  if (mode === 'decode' && file) return decode(file);
  const run = { typical, fastest }[mode];
  if (!run || !file) {
    throw new Error('usage: sharp_bench.js typical|fastest FILE ITERATIONS [--formats webp,avif] [--keep DIR] | decode DIR');
  }
  const { iterations, formats, keep } = options(rest);
  const input = fs.readFileSync(file);
  const meta = await sharp(input).metadata();
  const swapped = (meta.orientation || 1) >= 5;
  const source = {
    size: swapped ? [meta.height, meta.width] : [meta.width, meta.height],
    alpha: (await sharp(input).stats()).isOpaque === false,
    formats,
  };
  const outputs = await run(input, source);
  if (keep) {
    fs.mkdirSync(keep, { recursive: true });
    for (const o of outputs) fs.writeFileSync(path.join(keep, `${o.width}.${o.format}`), o.data);
  }
  const times = [];
  const cpuTimes = [];
  for (let i = 0; i < iterations; i++) {
    const started = process.hrtime.bigint();
    const cpuStarted = process.cpuUsage();
    await run(input, source);
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
    const cpu = process.cpuUsage(cpuStarted);
    cpuTimes.push((cpu.user + cpu.system) / 1000);
  }
  console.log(JSON.stringify({
    tool: 'sharp',
    mode: [mode, ...formats].join('+'),
    version: sharp.versions.sharp,
    file: path.basename(file),
    times_ms: times,
    cpu_ms: cpuTimes,
    renditions: outputs.map(({ data, ...o }) => o),
    peak_rss_kb: process.resourceUsage().maxRSS,
  }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
