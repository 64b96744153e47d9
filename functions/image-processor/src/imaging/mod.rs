//! The CPU work: sniff, check the header against the limits, decode (JPEG at a reduced size when the
//! renditions allow, as libvips' shrink-on-load does), convert to 8-bit sRGB, resize with a SIMD
//! Lanczos3, apply the EXIF orientation to the small results, encode. Synchronous: callers run it
//! in `spawn_blocking`.

mod animation;
mod colour;
mod encode;
mod jpeg;
mod metadata;
mod other;
mod progressive;

use fast_image_resize::PixelType;
use image::metadata::Orientation;

use crate::config::Config;
use crate::error::Error;
use crate::rendition::RenditionSpec;

pub use colour::SRGB_PROFILE;
pub use jpeg::dct_scale;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Jpeg,
    Png,
    Gif,
    Webp,
}

impl SourceFormat {
    pub fn label(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "jpeg",
            SourceFormat::Png => "png",
            SourceFormat::Gif => "gif",
            SourceFormat::Webp => "webp",
        }
    }
}

/// Tells the C allocator (glibc's, which libjpeg and libwebp use, and Rust's through it) to keep
/// the memory of large buffers once freed, rather than hand it back to the kernel. Decoding a
/// progressive or multi-scan JPEG allocates a coefficient buffer of 2 bytes a sample (90 MB for
/// a 15 MP 4:4:4 photo), and a fresh mapping costs a page fault every 4 KiB on first touch: about
/// a tenth of the decoding time, at every image. A warm Lambda process renders image after image,
/// so its buffers are mapped once and reused. Call once, at start.
pub fn keep_memory_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters, under the allocator's own lock.
    unsafe {
        // Allocations up to 512 MiB come from the heap (reused) rather than their own mapping,
        // and the heap is trimmed only past 1 GiB of free memory at its top.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Recognises a format by its signature: the key's suffix says nothing reliable.
pub fn sniff(bytes: &[u8]) -> Result<SourceFormat, Error> {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => Ok(SourceFormat::Jpeg),
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Ok(SourceFormat::Png),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Ok(SourceFormat::Gif),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Ok(SourceFormat::Webp),
        _ => Err(Error::NotAnImage),
    }
}

/// Settings of the pipeline, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub max_pixels: u64,
    pub jpeg_quality: u8,
    pub webp_quality: u8,
    pub avif_quality: u8,
    pub avif_speed: u8,
    /// Animated sources get animated renditions, within the two bounds.
    pub animate: bool,
    pub max_frames: u32,
    pub max_animation_pixels: u64,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Settings {
            max_pixels: config.max_pixels,
            jpeg_quality: config.jpeg_quality,
            webp_quality: config.webp_quality,
            avif_quality: config.avif_quality,
            avif_speed: config.avif_speed,
            animate: config.animate,
            max_frames: config.max_frames,
            max_animation_pixels: config.max_animation_pixels,
        }
    }
}

impl Default for Settings {
    /// The configuration's defaults.
    fn default() -> Self {
        Settings {
            max_pixels: 100_000_000,
            jpeg_quality: 79,
            webp_quality: 75,
            avif_quality: 70,
            avif_speed: 8,
            animate: true,
            max_frames: 300,
            max_animation_pixels: 200_000_000,
        }
    }
}

/// What was learnt about the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceInfo {
    pub format: SourceFormat,
    /// Size as displayed, after the EXIF orientation.
    pub width: u32,
    pub height: u32,
    /// Size the pixels were decoded at (smaller than stored for a DCT-scaled JPEG).
    pub decoded_width: u32,
    pub decoded_height: u32,
    pub has_alpha: bool,
    pub orientation: Orientation,
    /// Frames rendered: 1 for a still image (or an animation rendered as its first frame).
    pub frames: u32,
}

#[derive(Debug)]
pub struct Rendered {
    pub source: SourceInfo,
    /// What the decoder recovered from (libjpeg's warnings, say), for the log and a metric.
    pub warnings: Vec<String>,
    pub renditions: Vec<(RenditionSpec, Vec<u8>)>,
}

/// 8-bit pixels, rows top to bottom, as stored (before orientation): sRGB RGB or RGBA, or, for
/// JPEG sources, JFIF YCbCr, which is resized as it is and encoded to JPEG without converting.
pub(super) struct Pixels {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) alpha: bool,
    pub(super) ycbcr: bool,
    /// CMYK samples (`Some(inverted)`, four a pixel), converted to sRGB right after decoding.
    pub(super) cmyk: Option<bool>,
    pub(super) data: Vec<u8>,
}

impl Pixels {
    /// sRGB pixels, RGBA when `alpha`, RGB otherwise.
    pub(super) fn srgb(width: u32, height: u32, alpha: bool, data: Vec<u8>) -> Self {
        Pixels {
            width,
            height,
            alpha,
            ycbcr: false,
            cmyk: None,
            data,
        }
    }

    pub(super) fn pixel_type(&self) -> PixelType {
        if self.alpha {
            PixelType::U8x4
        } else {
            PixelType::U8x3
        }
    }
}

/// The header facts decoding needs: stored size and orientation.
pub(super) struct Header {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) orientation: Orientation,
    /// The embedded ICC profile, reassembled from its container's chunks.
    pub(super) icc: Option<Vec<u8>>,
    /// Recoverable problems the decoder met.
    pub(super) warnings: Vec<String>,
}

impl Header {
    pub(super) fn displayed(&self) -> (u32, u32) {
        if swaps_axes(self.orientation) {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

pub(super) fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

pub(super) fn check_pixels(width: u32, height: u32, limit: u64) -> Result<(), Error> {
    let (width, height) = (u64::from(width), u64::from(height));
    if width == 0 || height == 0 {
        return Err(Error::Corrupt(format!(
            "image header says {width}x{height} pixels: there is no picture"
        )));
    }
    if width * height > limit {
        return Err(Error::TooManyPixels {
            width,
            height,
            limit,
        });
    }
    Ok(())
}

/// Renders `bytes`. `plan` is told the displayed size and whether the image has transparency,
/// and answers the renditions to produce; `largest_width` is the widest configured one, which
/// sets how far a JPEG may be shrunk while decoding.
pub fn render(
    bytes: &[u8],
    settings: &Settings,
    largest_width: u32,
    plan: impl FnOnce((u32, u32), bool) -> Result<Vec<RenditionSpec>, Error>,
) -> Result<Rendered, Error> {
    let format = sniff(bytes)?;
    let (mut header, mut pixels) = match format {
        SourceFormat::Jpeg => jpeg::decode_jpeg(bytes, settings.max_pixels, largest_width)?,
        other => other::decode_other(bytes, other, settings.max_pixels)?,
    };
    let icc = header.icc.take();
    let colour = match pixels.cmyk.take() {
        Some(inverted) => {
            pixels.data =
                colour::cmyk_to_srgb(&pixels.data, icc.as_deref(), inverted, &mut header.warnings)?;
            None
        }
        None => colour::rgb_to_srgb(icc.as_deref(), pixels.alpha, &mut header.warnings),
    };
    let animation = settings
        .animate
        .then(|| animation::probe(bytes, format, settings.max_frames))
        .flatten()
        .filter(
            |animation| match animation::within_bounds(animation, settings) {
                Ok(()) => true,
                Err(why) => {
                    header.warnings.push(why);
                    false
                }
            },
        );
    let displayed = header.displayed();
    let specs = plan(displayed, pixels.alpha)?;
    let source = SourceInfo {
        format,
        width: displayed.0,
        height: displayed.1,
        decoded_width: pixels.width,
        decoded_height: pixels.height,
        has_alpha: pixels.alpha,
        orientation: header.orientation,
        frames: animation.map_or(1, |a| a.frames),
    };
    let renditions = match animation {
        Some(animation) => {
            let specs = specs
                .into_iter()
                .filter_map(|spec| spec.animated().transpose())
                .collect::<Result<Vec<_>, Error>>()?;
            animation::render(
                bytes,
                format,
                &animation,
                header.orientation,
                colour.as_ref(),
                specs,
                settings,
            )?
        }
        None => encode::resize_and_encode(
            &pixels,
            header.orientation,
            colour.as_ref(),
            specs,
            settings,
        )?,
    };
    Ok(Rendered {
        source,
        warnings: header.warnings,
        renditions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_sniffed_from_their_signatures() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest").unwrap(), SourceFormat::Jpeg);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest").unwrap(), SourceFormat::Png);
        assert_eq!(sniff(b"GIF89a...").unwrap(), SourceFormat::Gif);
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ").unwrap(), SourceFormat::Webp);
        for other in [&b""[..], b"hello", b"RIFF\0\0\0\0WAVE", b"\xFF\xD8"] {
            assert!(matches!(sniff(other), Err(Error::NotAnImage)));
        }
    }

    #[test]
    fn pixel_limit_is_checked_before_decoding() {
        assert!(check_pixels(10_000, 10_000, 100_000_000).is_ok());
        assert!(matches!(
            check_pixels(10_001, 10_000, 100_000_000),
            Err(Error::TooManyPixels { .. })
        ));
        assert!(matches!(check_pixels(0, 10, 100), Err(Error::Corrupt(_))));
    }
}
