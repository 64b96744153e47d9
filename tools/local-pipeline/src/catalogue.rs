//! The sample domestic catalogue: images of several formats and sizes, a video-sized binary and a
//! page, generated (deterministically) rather than downloaded.

use std::path::Path;

use anyhow::{Context, Result};
use image::{ImageBuffer, ImageFormat, Rgb, Rgba};

const MIB: usize = 1024 * 1024;

/// One catalogue entry: its path under the origin and what it is.
pub struct Entry {
    pub path: &'static str,
    pub description: &'static str,
}

pub const ENTRIES: &[Entry] = &[
    Entry {
        path: "index.html",
        description: "a page",
    },
    Entry {
        path: "images/photo-large.jpg",
        description: "JPEG 2400x1600",
    },
    Entry {
        path: "images/photo-small.jpg",
        description: "JPEG 640x427",
    },
    Entry {
        path: "images/café au lait.jpg",
        description: "JPEG 1200x800, a key with a space and unicode",
    },
    Entry {
        path: "images/logo.png",
        description: "PNG 512x512 with alpha",
    },
    Entry {
        path: "images/banner.webp",
        description: "WebP 1600x400",
    },
    Entry {
        path: "images/badge.gif",
        description: "GIF 300x300",
    },
    Entry {
        path: "video/clip.mp4",
        description: "a 24 MiB video-sized binary",
    },
];

/// Writes the catalogue under `dir` (entries already there are kept).
pub fn generate(dir: &Path) -> Result<()> {
    for entry in ENTRIES {
        let path = dir.join(entry.path);
        if path.exists() {
            continue;
        }
        std::fs::create_dir_all(
            path.parent()
                .expect("entries are in folders or at the root"),
        )?;
        write(entry.path, &path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn write(name: &str, path: &Path) -> Result<()> {
    match name {
        "index.html" => std::fs::write(
            path,
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Catalogue</title></head>\
             <body><h1>Catalogue</h1><img src=\"/images/photo-large.jpg\" alt=\"\"></body></html>\n",
        )?,
        "images/photo-large.jpg" => photo(2400, 1600).save_with_format(path, ImageFormat::Jpeg)?,
        "images/photo-small.jpg" => photo(640, 427).save_with_format(path, ImageFormat::Jpeg)?,
        "images/café au lait.jpg" => photo(1200, 800).save_with_format(path, ImageFormat::Jpeg)?,
        "images/logo.png" => logo(512).save_with_format(path, ImageFormat::Png)?,
        "images/banner.webp" => photo(1600, 400).save_with_format(path, ImageFormat::WebP)?,
        "images/badge.gif" => logo(300).save_with_format(path, ImageFormat::Gif)?,
        "video/clip.mp4" => {
            let mut rng = fastrand::Rng::with_seed(24);
            let bytes: Vec<u8> = (0..24 * MIB).map(|_| rng.u8(..)).collect();
            std::fs::write(path, bytes)?;
        }
        other => anyhow::bail!("no recipe for {other}"),
    }
    Ok(())
}

/// A landscape: sky gradient, a sun, hills, some texture.
fn photo(width: u32, height: u32) -> ImageBuffer<Rgb<u8>, Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(u64::from(width * height));
    ImageBuffer::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let hill = 0.65 + 0.1 * (fx * 9.0).sin() + 0.05 * (fx * 23.0).cos();
        let sun = ((fx - 0.75).powi(2) + (fy - 0.25).powi(2) * 2.25).sqrt() < 0.08;
        let noise = rng.u8(0..12);
        let [r, g, b] = if sun {
            [250, 220, 90]
        } else if fy > hill {
            [40 + (fy * 60.0) as u8, 120 - (fy * 40.0) as u8, 50]
        } else {
            [90 + (fy * 100.0) as u8, 150 + (fy * 80.0) as u8, 235]
        };
        Rgb([
            r.saturating_add(noise),
            g.saturating_add(noise),
            b.saturating_add(noise),
        ])
    })
}

/// A round badge on a transparent background.
fn logo(size: u32) -> ImageBuffer<Rgba<u8>, Vec<u8>> {
    ImageBuffer::from_fn(size, size, |x, y| {
        let c = size as f32 / 2.0;
        let d = ((x as f32 - c).powi(2) + (y as f32 - c).powi(2)).sqrt() / c;
        if d > 0.95 {
            Rgba([0, 0, 0, 0])
        } else if d > 0.8 {
            Rgba([200, 40, 40, 255])
        } else {
            Rgba([255, 255, 255, (255.0 * (1.0 - d * 0.5)) as u8])
        }
    })
}
