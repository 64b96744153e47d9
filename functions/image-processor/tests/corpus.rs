//! A third-party corpus through the renderer: every JPEG, PNG, GIF and WebP among Pillow's test
//! images (`scripts/image-corpus` fetches them; `IMAGE_CORPUS` may name another copy), written by
//! other tools, broken and hostile ones included. None may panic or crash the process; each one
//! renders, or is refused with a permanent reason that is the one expected of it.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Instant;

use image::metadata::Orientation;
use image_processor::imaging::{render, Rendered, Settings};
use image_processor::rendition::plan;
use image_processor::Config;
use shared::config::Env;
use shared::{Failure, ObjectKey};

fn corpus() -> PathBuf {
    let dir = std::env::var_os("IMAGE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../.local/corpus/pillow-12.0.0/Tests/images")
        });
    assert!(
        dir.is_dir(),
        "{} is missing: run `scripts/image-corpus` first (scripts/test does)",
        dir.display()
    );
    dir
}

enum Result {
    Rendered(Rendered),
    Refused {
        reason: &'static str,
        detail: String,
    },
    Panicked(String),
}

fn render_file(config: &Config, name: &str, bytes: &[u8]) -> Result {
    let key = ObjectKey::new(format!("images/{name}")).unwrap();
    let rendered = catch_unwind(AssertUnwindSafe(|| {
        render(
            bytes,
            &Settings::default(),
            config.largest_width(),
            |displayed, alpha| plan(config, &key, displayed, alpha),
        )
    }));
    match rendered {
        Ok(Ok(rendered)) => Result::Rendered(rendered),
        Ok(Err(err)) => {
            assert!(!err.is_retryable(), "{name}: retryable {err}");
            Result::Refused {
                reason: err.reason(),
                detail: err.to_string(),
            }
        }
        Err(panic) => Result::Panicked(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default(),
        ),
    }
}

/// Files a browser or Pillow displays that libjpeg warns about (junk before a marker, a broken
/// APP14 or Photoshop segment): they render, with the warnings.
const LENIENT: [&str; 4] = [
    "jpeg_ff00_header.jpg",
    "junk_jpeg_header.jpg",
    "photoshop-200dpi-broken.jpg",
    "truncated_app14.jpg",
];

/// Every refusal, with its reason: anything else renders.
const REFUSED: [(&str, &str); 11] = [
    // A private chunk before IHDR; an IDAT whose CRC is wrong.
    ("broken.png", "corrupt_image"),
    ("broken_data_stream.png", "corrupt_image"),
    // Frames reaching far past the logical screen (Pillow: DecompressionBombError).
    ("decompression_bomb.gif", "too_many_pixels"),
    ("decompression_bomb_extents.gif", "too_many_pixels"),
    // Bad Huffman codes from the first rows on: Pillow shows stripes of garbage.
    ("hopper_bad_exif.jpg", "corrupt_image"),
    ("no_palette.gif", "corrupt_image"),
    ("truncated_end_chunk.png", "corrupt_image"),
    ("truncated_image.png", "corrupt_image"),
    ("truncated_jpeg.jpg", "corrupt_image"),
    // Cut 12 bytes into its first scan (the sample keeps the metadata only).
    ("ultrahdr.jpg", "corrupt_image"),
    ("zero_width.gif", "corrupt_image"),
];

/// Orientations the files carry, and where from.
const ORIENTED: [(&str, u8); 4] = [
    // EXIF Orientation 8 on a 2x1 image.
    ("orientation_rectangle.jpg", 8),
    // XMP only: `tiff:Orientation` in an iTXt chunk, attribute and element forms.
    ("xmp_tags_orientation.png", 3),
    ("xmp_tags_orientation_exiftool.png", 3),
    ("hopper.jpg", 1),
];

fn images(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| {
            let lower = name.to_ascii_lowercase();
            [".jpg", ".jpeg", ".png", ".gif", ".webp"]
                .iter()
                .any(|suffix| lower.ends_with(suffix))
        })
        .collect();
    names.sort();
    names
}

/// The first rendition, decoded.
fn first_rendition(rendered: &Rendered) -> image::RgbImage {
    let (_, bytes) = &rendered.renditions[0];
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .unwrap()
        .decode()
        .unwrap()
        .to_rgb8()
}

fn mean_difference(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

#[test]
fn every_corpus_image_renders_or_is_refused_for_what_it_is() {
    let dir = corpus();
    // One small rendition: the decoders are what is tested, and unoptimised resizing is slow.
    let config = Config::from_env(&Env::from_pairs([
        ("TASK_TABLE", "tasks"),
        ("RENDITION_WIDTHS", "160"),
    ]))
    .unwrap();
    let names = images(&dir);
    assert!(
        names.len() > 400,
        "only {} images in {}",
        names.len(),
        dir.display()
    );
    let started = Instant::now();
    // On every core: the test runs unoptimised, like the rest of `cargo test`.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let results: BTreeMap<&str, Result> = std::thread::scope(|scope| {
        let workers: Vec<_> = names
            .chunks(names.len().div_ceil(threads))
            .map(|chunk| {
                let (dir, config) = (&dir, &config);
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|name| {
                            let bytes = std::fs::read(dir.join(name)).unwrap();
                            (name.as_str(), render_file(config, name, &bytes))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed();

    let mut rendered = 0;
    let mut warned = Vec::new();
    let mut refused = Vec::new();
    let mut panicked = Vec::new();
    for (name, result) in &results {
        match result {
            Result::Rendered(r) => {
                rendered += 1;
                if !r.warnings.is_empty() {
                    warned.push(format!("{name}: {}", r.warnings.join("; ")));
                }
            }
            Result::Refused { reason, detail } => {
                refused.push((*name, *reason, detail.as_str()));
            }
            Result::Panicked(message) => panicked.push(format!("{name}: {message}")),
        }
    }
    println!(
        "corpus: {} images in {:.1} s on {threads} threads: {rendered} rendered ({} with \
         warnings), {} refused, {} panicked",
        results.len(),
        elapsed.as_secs_f64(),
        warned.len(),
        refused.len(),
        panicked.len()
    );
    for line in &warned {
        println!("  warned  {line}");
    }
    for (name, reason, detail) in &refused {
        println!("  refused {name} ({reason}): {detail}");
    }
    assert!(panicked.is_empty(), "panicked: {panicked:#?}");
    let refusals: Vec<(&str, &str)> = refused
        .iter()
        .map(|(name, reason, _)| (*name, *reason))
        .collect();
    assert_eq!(refusals, REFUSED, "refusals differ from those expected");

    let get = |name: &str| match results.get(name) {
        Some(Result::Rendered(rendered)) => rendered,
        _ => panic!("{name} did not render"),
    };
    for name in LENIENT {
        let warnings = &get(name).warnings;
        assert!(
            warnings.iter().any(|w| w.starts_with("Corrupt JPEG data")),
            "{name}: {warnings:?}"
        );
    }
    for (name, orientation) in ORIENTED {
        assert_eq!(
            get(name).source.orientation,
            Orientation::from_exif(orientation).unwrap(),
            "{name}"
        );
    }
    // hopper_orientation_2..8 (JPEG and WebP, EXIF): turned upright, they are hopper again.
    for extension in ["jpg", "webp"] {
        let upright = first_rendition(get(&format!("hopper.{extension}")));
        for n in 2..=8u8 {
            let name = format!("hopper_orientation_{n}.{extension}");
            let rendered = get(&name);
            assert_eq!(
                rendered.source.orientation,
                Orientation::from_exif(n).unwrap(),
                "{name}"
            );
            let difference = mean_difference(&first_rendition(rendered), &upright);
            assert!(
                difference < 8.0,
                "{name}: differs from hopper by {difference}"
            );
        }
    }
}
