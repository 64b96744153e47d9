//! The benchmark side of the image processor: the very pipeline the Lambda runs (`imaging::render`
//! with the configured renditions), single-threaded, on one file, timed.
//!
//!   thumbnail_bench generate DIR [DIVISOR] writes the benchmark's inputs (photo-like, deterministic),
//!                                         each side divided by DIVISOR (default 1) for smoke runs
//!   thumbnail_bench run FILE [ITERATIONS] renders FILE ITERATIONS times (after one warm-up) and
//!                                         prints one JSON line: times, renditions, peak RSS
//!
//! Renditions: widths 160, 320, 640, 1280, JPEG quality 80 (PNG for images with transparency),
//! the Lambda's defaults.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context as _};
use image_processor::imaging::{self, Settings};
use image_processor::{rendition, Config};
use shared::config::Env;
use shared::ObjectKey;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["generate", dir] => generate(Path::new(dir), 1),
        ["generate", dir, divisor] => generate(Path::new(dir), divisor.parse().context("DIVISOR")?),
        ["run", file] => run(Path::new(file), 10),
        ["run", file, iterations] => {
            run(Path::new(file), iterations.parse().context("ITERATIONS")?)
        }
        _ => bail!("usage: thumbnail_bench generate DIR [DIVISOR] | run FILE [ITERATIONS]"),
    }
}

fn run(file: &Path, iterations: usize) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let config = Config::from_env(&Env::from_pairs([("TASK_TABLE", "benchmark")]))?;
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
    let mut times = Vec::with_capacity(iterations);
    let mut cpu_times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
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

// ---------------------------------------------------------------- inputs

/// A deterministic stand-in for a photograph: smooth gradients and blobs at several scales plus
/// sensor-like grain, so that it compresses like one (about 2-4 bits per pixel at quality 92)
/// and decoding does a photograph's entropy-decoding work.
fn photo(width: u32, height: u32, alpha: bool) -> Vec<u8> {
    let channels = if alpha { 4 } else { 3 };
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut data = Vec::with_capacity((width * height) as usize * channels);
    let (w, h) = (width as f32, height as f32);
    for y in 0..height {
        let fy = y as f32 / h;
        for x in 0..width {
            let fx = x as f32 / w;
            let wave =
                |a: f32, b: f32, c: f32| ((fx * a + fy * b) * std::f32::consts::TAU + c).sin();
            let large = wave(1.3, 0.7, 0.0) * 0.5 + wave(0.4, 2.1, 1.0) * 0.5;
            let medium = wave(7.0, 5.0, 2.0) * wave(3.0, -9.0, 0.5);
            let fine = wave(61.0, 47.0, 0.0) * wave(-53.0, 71.0, 1.5);
            let mut grain = || rng.f32() * 2.0 - 1.0;
            let base = [
                0.55 + 0.30 * large,
                0.45 + 0.25 * medium,
                0.40 + 0.30 * (large - medium) * 0.5,
            ];
            for (i, value) in base.iter().enumerate() {
                let v = value + 0.08 * fine * (i as f32 + 1.0) / 3.0 + 0.035 * grain();
                data.push((v.clamp(0.0, 1.0) * 255.0) as u8);
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

fn write_jpeg(path: &Path, width: u32, height: u32, progressive: bool) -> anyhow::Result<()> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 92);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    encoder.set_progressive(progressive);
    encoder.set_optimized_huffman_tables(true);
    encoder.encode(
        &photo(width, height, false),
        width as u16,
        height as u16,
        jpeg_encoder::ColorType::Rgb,
    )?;
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
    write_jpeg(&dir.join("photo-24mp.jpg"), 6000 / d, 4000 / d, false)?;
    write_jpeg(&dir.join("photo-12mp.jpg"), 4000 / d, 3000 / d, false)?;
    write_jpeg(&dir.join("progressive-12mp.jpg"), 4000 / d, 3000 / d, true)?;
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
