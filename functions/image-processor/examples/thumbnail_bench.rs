//! The benchmark side of the image processor: the very pipeline the Lambda runs (`imaging::render`
//! with the configured renditions), single-threaded, on one file, timed; and the perceptual score
//! of any tool's renditions against one reference per rendition size.
//!
//!   thumbnail_bench generate DIR [DIVISOR]  writes the benchmark's inputs (photo-like,
//!                                           deterministic), each side divided by DIVISOR (default 1)
//!                                           for smoke runs
//!   thumbnail_bench run FILE [ITERATIONS] [--formats webp,avif] [--keep DIR]
//!                                           renders FILE ITERATIONS times (after one warm-up) and
//!                                           prints one JSON line: times, renditions, peak RSS;
//!                                           --formats adds WebP and/or AVIF renditions beside the
//!                                           JPEG or PNG ones (WEBP_RENDITIONS, AVIF_RENDITIONS),
//!                                           --keep writes the warm-up's renditions as DIR/{width}.{ext}
//!   thumbnail_bench score SOURCE DIR...     prints one JSON line per DIR: the SSIMULACRA2 score of
//!                                           each rendition in it (files {width}.{ext}; an AVIF one
//!                                           is read from its decoded copy {width}.avif.png)
//!
//! Renditions: widths 160, 320, 640, 1280, JPEG quality 80 (PNG for images with transparency),
//! the Lambda's defaults; `JPEG_*`, `WEBP_*` and `AVIF_*` variables of the environment are passed
//! to the configuration.
//!
//! The reference of a rendition is the source decoded at full resolution (no DCT scaling, by the
//! `image` crate, not by the pipeline's decoder), oriented, converted to sRGB through its ICC
//! profile when it has one (moxcms), and resized to exactly the rendition's width and height with
//! Lanczos3 in 32-bit float, in gamma-encoded sRGB: the resampling that both ours and sharp do
//! (neither resizes in linear light), so that the score measures what the tools do differently
//! rather than a convention they share. A rendition is converted to sRGB through its own ICC
//! profile too, if it carries one. Images with transparency are composited over a dark and a light
//! grey, as a browser would (in gamma-encoded sRGB), and score the worse of the two.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};
use image::{DynamicImage, ImageDecoder, ImageReader, Rgb32FImage};
use image_processor::imaging::{self, Settings};
use image_processor::{rendition, Config};
use shared::config::Env;
use shared::ObjectKey;
use ssimulacra2::{ColorPrimaries, Rgb, TransferCharacteristic};

fn main() -> anyhow::Result<()> {
    // As the Lambda does at start: large buffers stay mapped from one image to the next.
    imaging::keep_memory_mapped();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["generate", dir] => generate(Path::new(dir), 1),
        ["generate", dir, divisor] => generate(Path::new(dir), divisor.parse().context("DIVISOR")?),
        ["run", file, ref options @ ..] => run(Path::new(file), &RunOptions::parse(options)?),
        ["score", source, ref dirs @ ..] if !dirs.is_empty() => score(Path::new(source), dirs),
        _ => bail!(
            "usage: thumbnail_bench generate DIR [DIVISOR] \
             | run FILE [ITERATIONS] [--formats webp,avif] [--keep DIR] | score SOURCE DIR..."
        ),
    }
}

struct RunOptions {
    iterations: usize,
    /// Extra rendition formats beside JPEG or PNG: "webp", "avif".
    formats: Vec<String>,
    keep: Option<String>,
}

impl RunOptions {
    fn parse(args: &[&str]) -> anyhow::Result<Self> {
        let mut options = RunOptions {
            iterations: 10,
            formats: Vec::new(),
            keep: None,
        };
        let mut args = args.iter();
        while let Some(&arg) = args.next() {
            match arg {
                "--formats" => {
                    let list = args.next().context("--formats needs a list")?;
                    for format in list.split(',').filter(|f| !f.is_empty()) {
                        if !matches!(format, "webp" | "avif") {
                            bail!("--formats: {format} is neither webp nor avif");
                        }
                        options.formats.push(format.to_owned());
                    }
                }
                "--keep" => {
                    options.keep = Some(args.next().context("--keep needs a DIR")?.to_string())
                }
                iterations => options.iterations = iterations.parse().context("ITERATIONS")?,
            }
        }
        Ok(options)
    }
}

fn run(file: &Path, options: &RunOptions) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    // The encoders' settings may come from the environment, so that the peers are told the same.
    let passed: Vec<(String, String)> = std::env::vars()
        .filter(|(name, _)| {
            ["JPEG_", "WEBP_", "AVIF_"]
                .iter()
                .any(|p| name.starts_with(p))
        })
        .collect();
    let mut pairs: Vec<(&str, &str)> = vec![("TASK_TABLE", "benchmark")];
    pairs.extend(passed.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for format in &options.formats {
        pairs.push(match format.as_str() {
            "webp" => ("WEBP_RENDITIONS", "true"),
            _ => ("AVIF_RENDITIONS", "true"),
        });
    }
    let config = Config::from_env(&Env::from_pairs(pairs))?;
    let settings = Settings::from_config(&config);
    let key = ObjectKey::new(format!(
        "images/{}",
        file.file_name().unwrap_or_default().to_string_lossy()
    ))?;
    let once = || {
        imaging::render(
            &bytes,
            &settings,
            config.largest_width(),
            |displayed, alpha| rendition::plan(&config, &key, displayed, alpha),
        )
    };
    let warm = once()?;
    for format in &options.formats {
        if !warm
            .renditions
            .iter()
            .any(|(spec, _)| spec.format.extension() == format)
        {
            bail!("this build makes no {format} renditions");
        }
    }
    if let Some(dir) = &options.keep {
        std::fs::create_dir_all(dir)?;
        for (spec, body) in &warm.renditions {
            let name = format!("{}.{}", spec.width, spec.format.extension());
            std::fs::write(Path::new(dir).join(name), body)?;
        }
    }
    let mut times = Vec::with_capacity(options.iterations);
    let mut cpu_times = Vec::with_capacity(options.iterations);
    for _ in 0..options.iterations {
        let (started, cpu_started) = (Instant::now(), cpu_ms());
        let rendered = once()?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        cpu_times.push(cpu_ms() - cpu_started);
        std::hint::black_box(rendered);
    }
    let renditions: Vec<serde_json::Value> = warm
        .renditions
        .iter()
        .map(|(spec, body)| {
            serde_json::json!({
                "width": spec.width, "height": spec.height,
                "format": spec.format.extension(), "bytes": body.len(),
            })
        })
        .collect();
    let source = warm.source;
    let line = serde_json::json!({
        "tool": "rust",
        "file": file.file_name().map(|f| f.to_string_lossy().into_owned()),
        "times_ms": times,
        "cpu_ms": cpu_times,
        "decoded": [source.decoded_width, source.decoded_height],
        "renditions": renditions,
        "peak_rss_kb": peak_rss_kb(),
    });
    println!("{line}");
    Ok(())
}

/// CPU time used by the process so far (all threads), in milliseconds: less disturbed than wall
/// time by other work on a shared machine.
fn cpu_ms() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `now` is.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    now.tv_sec as f64 * 1000.0 + now.tv_nsec as f64 / 1e6
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

// ---------------------------------------------------------------- perceptual score

/// The backgrounds an image with transparency is shown on (gamma-encoded grey levels).
const BACKGROUNDS: [f32; 2] = [0.1, 0.9];

/// Decoded pixels as 32-bit float sRGB (gamma-encoded, 0..=1), with alpha when there is some.
struct Decoded {
    width: u32,
    height: u32,
    /// RGBA, straight alpha.
    rgba: Vec<f32>,
    alpha: bool,
}

impl Decoded {
    /// The image over a grey background, as the metric's input.
    fn over(&self, background: f32) -> Rgb32FImage {
        let data = self
            .rgba
            .chunks_exact(4)
            .flat_map(|p| {
                let a = p[3];
                [0, 1, 2].map(|c| p[c] * a + background * (1.0 - a))
            })
            .collect();
        Rgb32FImage::from_raw(self.width, self.height, data).expect("buffer of the right size")
    }
}

/// Decodes an image file and converts it to sRGB through its ICC profile (if it has one), at
/// full resolution: no DCT scaling. JPEG through libjpeg-turbo (the decoder of sharp and of the
/// pipeline alike), the others through the `image` crate, oriented. (The JPEG inputs carry no
/// EXIF orientation, and no tool writes one into its renditions.)
fn decode_srgb(bytes: &[u8]) -> anyhow::Result<Decoded> {
    let (width, height, mut rgba, alpha, icc) = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        decode_jpeg(bytes)?
    } else {
        let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
        reader.no_limits();
        let mut decoder = reader.into_decoder()?;
        let icc = decoder.icc_profile()?;
        let orientation = decoder.orientation()?;
        let mut image = DynamicImage::from_decoder(decoder)?;
        image.apply_orientation(orientation);
        let alpha = image.color().has_alpha();
        let (width, height) = (image.width(), image.height());
        (width, height, image.into_rgba32f().into_raw(), alpha, icc)
    };
    if let Some(icc) = icc {
        to_srgb(&icc, &mut rgba)?;
    }
    Ok(Decoded {
        width,
        height,
        rgba,
        alpha,
    })
}

type Planar = (u32, u32, Vec<f32>, bool, Option<Vec<u8>>);

fn decode_jpeg(bytes: &[u8]) -> anyhow::Result<Planar> {
    let decompress = mozjpeg::Decompress::builder()
        .with_markers(&[mozjpeg::Marker::APP(2)])
        .from_mem(bytes)?;
    // The ICC profile: APP2 `ICC_PROFILE\0`, sequence number, count, then a piece of it.
    let mut chunks: Vec<(u8, Vec<u8>)> = decompress
        .markers()
        .filter_map(|m| m.data.strip_prefix(b"ICC_PROFILE\0"))
        .filter(|rest| rest.len() > 2)
        .map(|rest| (rest[0], rest[2..].to_vec()))
        .collect();
    chunks.sort_by_key(|(sequence, _)| *sequence);
    let icc = (!chunks.is_empty()).then(|| chunks.into_iter().flat_map(|(_, c)| c).collect());
    let mut started = decompress.rgb()?;
    let (width, height) = (started.width() as u32, started.height() as u32);
    let rgb: Vec<[u8; 3]> = started.read_scanlines()?;
    started.finish()?;
    let rgba = rgb
        .iter()
        .flat_map(|p| [p[0], p[1], p[2], 255].map(|v| f32::from(v) / 255.0))
        .collect();
    Ok((width, height, rgba, false, icc))
}

/// Converts RGBA floats in place from the colours of `icc` to sRGB (perceptual intent, the
/// profiles' default), clipped to sRGB's gamut as an 8-bit rendition would be.
fn to_srgb(icc: &[u8], rgba: &mut [f32]) -> anyhow::Result<()> {
    let profile = moxcms::ColorProfile::new_from_slice(icc)
        .map_err(|e| anyhow!("reading the ICC profile: {e:?}"))?;
    if profile.color_space != moxcms::DataColorSpace::Rgb {
        bail!(
            "an ICC profile of colour space {:?}: only RGB ones are scored",
            profile.color_space
        );
    }
    let transform = profile
        .create_transform_f32(
            moxcms::Layout::Rgba,
            &moxcms::ColorProfile::new_srgb(),
            moxcms::Layout::Rgba,
            moxcms::TransformOptions::default(),
        )
        .map_err(|e| anyhow!("an ICC transform to sRGB: {e:?}"))?;
    let source = rgba.to_vec();
    transform
        .transform(&source, rgba)
        .map_err(|e| anyhow!("the ICC transform: {e:?}"))?;
    for v in rgba.iter_mut() {
        *v = v.clamp(0.0, 1.0);
    }
    Ok(())
}

fn metric_input(image: &Rgb32FImage) -> anyhow::Result<Rgb> {
    let data = image.pixels().map(|p| p.0).collect();
    Rgb::new(
        data,
        image.width() as usize,
        image.height() as usize,
        TransferCharacteristic::SRGB,
        ColorPrimaries::BT709,
    )
    .map_err(|e| anyhow!("metric input: {e:?}"))
}

/// SSIMULACRA2 (about 90: visually lossless, 70: high quality, 50: medium, 30: low).
fn ssimulacra2_score(reference: &Rgb32FImage, distorted: &Rgb32FImage) -> anyhow::Result<f64> {
    ssimulacra2::compute_frame_ssimulacra2(metric_input(reference)?, metric_input(distorted)?)
        .map_err(|e| anyhow!("SSIMULACRA2: {e}"))
}

/// Lanczos3 weights of each output sample along one axis: the window widens with the
/// reduction (an antialiasing filter), samples are centred (pixel centres at +0.5), the edges
/// are clamped, and the weights sum to 1.
fn lanczos3_weights(from: u32, to: u32) -> Vec<(usize, Vec<f32>)> {
    let scale = f64::from(from) / f64::from(to);
    let stretch = scale.max(1.0);
    let support = 3.0 * stretch;
    let sinc = |x: f64| {
        if x.abs() < 1e-9 {
            1.0
        } else {
            let px = std::f64::consts::PI * x;
            px.sin() / px
        }
    };
    (0..to)
        .map(|i| {
            let centre = (f64::from(i) + 0.5) * scale;
            let first = (centre - support).floor().max(0.0) as usize;
            let last = ((centre + support).ceil() as usize).min(from as usize);
            let mut weights: Vec<f64> = (first..last)
                .map(|j| {
                    let x = (j as f64 + 0.5 - centre) / stretch;
                    if x.abs() < 3.0 {
                        sinc(x) * sinc(x / 3.0)
                    } else {
                        0.0
                    }
                })
                .collect();
            let sum: f64 = weights.iter().sum();
            weights.iter_mut().for_each(|w| *w /= sum);
            (first, weights.into_iter().map(|w| w as f32).collect())
        })
        .collect()
}

/// Resizes to exactly `width` x `height` with Lanczos3, separably, in 32-bit float (no rounding
/// to 8 bits between the passes or at the end).
fn lanczos3(image: &Rgb32FImage, width: u32, height: u32) -> Rgb32FImage {
    let (from_w, from_h) = image.dimensions();
    let source = image.as_raw();
    let columns = lanczos3_weights(from_w, width);
    let mut wide = vec![0.0f32; (width * from_h) as usize * 3];
    for y in 0..from_h as usize {
        let row = &source[y * from_w as usize * 3..][..from_w as usize * 3];
        for (x, (first, weights)) in columns.iter().enumerate() {
            let mut sum = [0.0f32; 3];
            for (k, w) in weights.iter().enumerate() {
                let p = &row[(first + k) * 3..][..3];
                for c in 0..3 {
                    sum[c] += p[c] * w;
                }
            }
            wide[(y * width as usize + x) * 3..][..3].copy_from_slice(&sum);
        }
    }
    let rows = lanczos3_weights(from_h, height);
    let mut out = vec![0.0f32; (width * height) as usize * 3];
    let stride = width as usize * 3;
    for (y, (first, weights)) in rows.iter().enumerate() {
        let target = &mut out[y * stride..][..stride];
        for (k, w) in weights.iter().enumerate() {
            let row = &wide[(first + k) * stride..][..stride];
            for (t, v) in target.iter_mut().zip(row) {
                *t += v * w;
            }
        }
    }
    // Lanczos rings: keep the values displayable, as an encoder would.
    out.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    Rgb32FImage::from_raw(width, height, out).expect("buffer of the right size")
}

fn score(source: &Path, dirs: &[&str]) -> anyhow::Result<()> {
    let source_bytes =
        std::fs::read(source).with_context(|| format!("reading {}", source.display()))?;
    let full =
        decode_srgb(&source_bytes).with_context(|| format!("decoding {}", source.display()))?;
    // Composited once per background at full resolution: compositing and resizing commute
    // (both are linear in the same gamma-encoded values), so this is the reference of the
    // source's premultiplied pixels.
    let full_over: Vec<Rgb32FImage> = if full.alpha {
        BACKGROUNDS.iter().map(|&b| full.over(b)).collect()
    } else {
        vec![full.over(0.0)]
    };
    let mut references: HashMap<(u32, u32), Vec<Rgb32FImage>> = HashMap::new();
    for dir in dirs {
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("listing {dir}"))?
            .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
            .collect::<anyhow::Result<_>>()?;
        files.sort();
        let mut scored = Vec::new();
        for name in files {
            // An AVIF rendition is read from its decoded copy, made by the peer's decoder.
            let (file, pixels) = match name.strip_suffix(".png") {
                Some(avif) if avif.ends_with(".avif") => (avif.to_owned(), name.clone()),
                _ if name.ends_with(".avif") => continue,
                _ => (name.clone(), name.clone()),
            };
            let format = file.rsplit('.').next().unwrap_or_default().to_owned();
            let bytes = std::fs::metadata(Path::new(dir).join(&file))
                .with_context(|| format!("{dir}/{file}: its decoded copy is here, not itself"))?
                .len();
            let rendition = decode_srgb(&std::fs::read(Path::new(dir).join(&pixels))?)
                .with_context(|| format!("decoding {dir}/{pixels}"))?;
            let size = (rendition.width, rendition.height);
            let reference = references.entry(size).or_insert_with(|| {
                full_over
                    .iter()
                    .map(|image| lanczos3(image, size.0, size.1))
                    .collect()
            });
            let mut worst = f64::INFINITY;
            for (i, reference) in reference.iter().enumerate() {
                let background = if full.alpha { BACKGROUNDS[i] } else { 0.0 };
                let value = ssimulacra2_score(reference, &rendition.over(background))
                    .with_context(|| format!("scoring {dir}/{file}"))?;
                worst = worst.min(value);
            }
            scored.push(serde_json::json!({
                "file": file, "format": format, "width": size.0, "height": size.1,
                "bytes": bytes, "score": (worst * 100.0).round() / 100.0,
            }));
        }
        let line = serde_json::json!({
            "source": source.file_name().map(|f| f.to_string_lossy().into_owned()),
            "dir": Path::new(dir).file_name().map(|f| f.to_string_lossy().into_owned()),
            "renditions": scored,
        });
        println!("{line}");
    }
    Ok(())
}

// ---------------------------------------------------------------- inputs

/// Smooth value noise: a hashed lattice every `period` pixels, interpolated (smoothstep).
fn value_noise(x: f32, y: f32, period: f32, seed: u32) -> f32 {
    let (gx, gy) = (x / period, y / period);
    let (ix, iy) = (gx.floor(), gy.floor());
    let (fx, fy) = (gx - ix, gy - iy);
    let lattice = |dx: i32, dy: i32| {
        let mut h = (ix as i32 + dx) as u32;
        h = h.wrapping_mul(0x9E37_79B1) ^ ((iy as i32 + dy) as u32).wrapping_mul(0x85EB_CA77);
        h ^= seed.wrapping_mul(0xC2B2_AE3D);
        h ^= h >> 15;
        h = h.wrapping_mul(0x2C1B_3C6D);
        h ^= h >> 12;
        (h & 0xFFFF) as f32 / 32767.5 - 1.0
    };
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let top = lattice(0, 0) + (lattice(1, 0) - lattice(0, 0)) * sx;
    let bottom = lattice(0, 1) + (lattice(1, 1) - lattice(0, 1)) * sx;
    top + (bottom - top) * sy
}

/// A hard-edged object in the scene: a disc of its own colour and texture.
struct Disc {
    x: f32,
    y: f32,
    radius: f32,
    colour: [f32; 3],
}

/// A deterministic stand-in for a photograph: soft lighting (gradients at several scales),
/// textures (value noise from a few pixels to a few hundred), hard-edged objects, fine periodic
/// detail and sensor grain (Gaussian-like, stronger in the shadows' relative terms, partly
/// chromatic), so that it compresses like one (about 3-5 bits per pixel at quality 92): neither
/// flat areas nor pure noise flatter an encoder, and decoding does a photograph's entropy work.
fn photo(width: u32, height: u32, alpha: bool) -> Vec<u8> {
    let channels = if alpha { 4 } else { 3 };
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let discs: Vec<Disc> = (0..24)
        .map(|_| Disc {
            x: rng.f32(),
            y: rng.f32(),
            radius: 0.02 + rng.f32() * 0.12,
            colour: [rng.f32(), rng.f32(), rng.f32()],
        })
        .collect();
    let mut data = Vec::with_capacity((width * height) as usize * channels);
    let (w, h) = (width as f32, height as f32);
    // Textures are sized in pixels of the full-size image, so that a smoke run's smaller inputs
    // look like the same photograph taken with fewer pixels.
    let scale = 4000.0 / w.max(h);
    for y in 0..height {
        let fy = y as f32 / h;
        let py = y as f32 * scale;
        for x in 0..width {
            let fx = x as f32 / w;
            let px = x as f32 * scale;
            let wave =
                |a: f32, b: f32, c: f32| ((fx * a + fy * b) * std::f32::consts::TAU + c).sin();
            let large = wave(1.3, 0.7, 0.0) * 0.5 + wave(0.4, 2.1, 1.0) * 0.5;
            let medium = wave(7.0, 5.0, 2.0) * wave(3.0, -9.0, 0.5);
            let fine = wave(61.0, 47.0, 0.0) * wave(-53.0, 71.0, 1.5);
            let texture = value_noise(px, py, 180.0, 1) * 0.5
                + value_noise(px, py, 40.0, 2) * 0.3
                + value_noise(px, py, 9.0, 3) * 0.2
                + value_noise(px, py, 2.5, 4) * 0.15;
            let tint = value_noise(px, py, 60.0, 5);
            let mut base = [
                0.55 + 0.30 * large + 0.10 * texture,
                0.45 + 0.25 * medium + 0.09 * texture + 0.03 * tint,
                0.40 + 0.15 * (large - medium) + 0.08 * texture - 0.03 * tint,
            ];
            for disc in &discs {
                let d = ((fx - disc.x) * w).hypot((fy - disc.y) * h) / w.max(h);
                // About one pixel of anti-aliased edge.
                let coverage = ((disc.radius - d) * w.max(h) + 0.5).clamp(0.0, 1.0);
                if coverage > 0.0 {
                    for (c, value) in base.iter_mut().enumerate() {
                        let own = disc.colour[c] * (0.8 + 0.25 * texture) + 0.05 * medium;
                        *value = *value * (1.0 - coverage) + own * coverage;
                    }
                }
            }
            let luma = 0.3 * base[0] + 0.6 * base[1] + 0.1 * base[2];
            let sigma = 0.012 + 0.02 * luma.clamp(0.0, 1.0).sqrt();
            let mut gauss = || (rng.f32() + rng.f32() + rng.f32() - 1.5) * 2.0;
            let grain = gauss() * sigma;
            for (i, value) in base.iter().enumerate() {
                let v =
                    value + 0.06 * fine * (i as f32 + 1.0) / 3.0 + grain + 0.35 * sigma * gauss();
                data.push((v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8);
            }
            if alpha {
                // An opaque subject on a transparent, soft-edged background.
                let r = ((fx - 0.5).powi(2) + (fy - 0.5).powi(2)).sqrt();
                data.push(((0.45 - r) * 2000.0).clamp(0.0, 255.0) as u8);
            }
        }
    }
    data
}

struct JpegInput {
    width: u32,
    height: u32,
    progressive: bool,
    sampling: jpeg_encoder::SamplingFactor,
    /// An ICC profile to embed (APP2 `ICC_PROFILE` chunks): the pixels are in its colours.
    icc: Option<Vec<u8>>,
}

/// Written the way cameras and editors write them, with libjpeg-turbo: baseline files interleaved
/// with the standard Huffman tables, progressive ones with libjpeg's default script (successive
/// approximation: the last bit of every coefficient comes in the last scans), quality 92.
fn write_jpeg(path: &Path, input: JpegInput) -> anyhow::Result<()> {
    let encode = || -> std::io::Result<Vec<u8>> {
        let mut compress = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
        compress.set_fastest_defaults();
        compress.set_size(input.width as usize, input.height as usize);
        compress.set_quality(92.0);
        let pixel = match input.sampling {
            jpeg_encoder::SamplingFactor::F_1_1 => (1, 1),
            _ => (2, 2),
        };
        compress.set_chroma_sampling_pixel_sizes(pixel, pixel);
        if input.progressive {
            compress.set_progressive_mode();
        }
        let mut started = compress.start_compress(Vec::new())?;
        if let Some(icc) = &input.icc {
            started.write_icc_profile(icc);
        }
        started.write_scanlines(&photo(input.width, input.height, false))?;
        started.finish()
    };
    let out = std::panic::catch_unwind(encode)
        .map_err(|_| anyhow!("libjpeg failed to write {}", path.display()))??;
    std::fs::write(path, out)?;
    Ok(())
}

fn write_png(path: &Path, width: u32, height: u32) -> anyhow::Result<()> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&photo(width, height, true))?;
    writer.finish()?;
    std::fs::write(path, out)?;
    Ok(())
}

fn generate(dir: &Path, divisor: u32) -> anyhow::Result<()> {
    if divisor == 0 {
        bail!("DIVISOR must be at least 1");
    }
    std::fs::create_dir_all(dir)?;
    let d = divisor;
    let icc = |profile: moxcms::ColorProfile| {
        profile
            .encode()
            .map_err(|e| anyhow!("encoding an ICC profile: {e:?}"))
    };
    use jpeg_encoder::SamplingFactor::{F_1_1, F_2_2};
    let jpegs = [
        ("photo-24mp.jpg", 6000, 4000, false, F_2_2, None),
        ("photo-12mp.jpg", 4000, 3000, false, F_2_2, None),
        ("progressive-12mp.jpg", 4000, 3000, true, F_2_2, None),
        // A camera's or an editor's progressive 4:4:4 export.
        ("progressive-444-15mp.jpg", 4700, 3133, true, F_1_1, None),
        // Phone photographs: their colours are Display P3's (or Adobe RGB's), not sRGB's.
        (
            "p3-12mp.jpg",
            4032,
            3024,
            false,
            F_2_2,
            Some(icc(moxcms::ColorProfile::new_display_p3())?),
        ),
        (
            "adobergb-8mp.jpg",
            3264,
            2448,
            false,
            F_2_2,
            Some(icc(moxcms::ColorProfile::new_adobe_rgb())?),
        ),
    ];
    for (name, width, height, progressive, sampling, icc) in jpegs {
        let input = JpegInput {
            width: width / d,
            height: height / d,
            progressive,
            sampling,
            icc,
        };
        write_jpeg(&dir.join(name), input)?;
    }
    write_png(&dir.join("alpha-4mp.png"), 2400 / d, 1600 / d)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        eprintln!(
            "{} {} bytes",
            entry.path().display(),
            entry.metadata()?.len()
        );
    }
    Ok(())
}
