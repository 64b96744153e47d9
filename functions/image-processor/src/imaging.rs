//! The CPU work: sniff, check the header against the limits, decode (JPEG at a reduced size when the
//! renditions allow, as libvips' shrink-on-load does), convert to 8-bit sRGB, resize with a SIMD
//! Lanczos3, apply the EXIF orientation to the small results, encode. Synchronous: callers run it
//! in `spawn_blocking`.

use std::ffi::CStr;
use std::io::Cursor;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};
use mozjpeg::{ColorSpace, Decompress, Marker};

use crate::error::Error;
use crate::rendition::{fit, Format, RenditionSpec};

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
}

#[derive(Debug)]
pub struct Rendered {
    pub source: SourceInfo,
    pub renditions: Vec<(RenditionSpec, Vec<u8>)>,
}

/// 8-bit pixels, rows top to bottom, as stored (before orientation): sRGB RGB or RGBA, or, for
/// JPEG sources, JFIF YCbCr, which is resized as it is and encoded to JPEG without converting.
struct Pixels {
    width: u32,
    height: u32,
    alpha: bool,
    ycbcr: bool,
    data: Vec<u8>,
}

impl Pixels {
    fn pixel_type(&self) -> PixelType {
        if self.alpha {
            PixelType::U8x4
        } else {
            PixelType::U8x3
        }
    }
}

/// The header facts decoding needs: stored size and orientation.
struct Header {
    width: u32,
    height: u32,
    orientation: Orientation,
}

impl Header {
    fn displayed(&self) -> (u32, u32) {
        if swaps_axes(self.orientation) {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

fn check_pixels(width: u32, height: u32, limit: u64) -> Result<(), Error> {
    let (width, height) = (u64::from(width), u64::from(height));
    if width == 0 || height == 0 {
        return Err(Error::Corrupt(format!(
            "image header says {width}x{height}"
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
    let (header, pixels) = match format {
        SourceFormat::Jpeg => decode_jpeg(bytes, settings.max_pixels, largest_width)?,
        other => decode_other(bytes, other, settings.max_pixels)?,
    };
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
    };
    let renditions = resize_and_encode(&pixels, header.orientation, specs, settings)?;
    Ok(Rendered { source, renditions })
}

// ---------------------------------------------------------------- JPEG

/// libjpeg reports errors by calling `error_exit`; the mozjpeg crate unwinds from there. Warnings
/// (a truncated file, corrupt entropy data) are made errors too, as sharp's default `failOn` does:
/// otherwise a truncated upload would become grey thumbnails.
fn strict_error_mgr() -> mozjpeg_sys::jpeg_error_mgr {
    // SAFETY: jpeg_std_error fills in a zeroed manager completely.
    let mut err: mozjpeg_sys::jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { mozjpeg_sys::jpeg_std_error(&mut err) };
    err.error_exit = Some(jpeg_fail);
    err.emit_message = Some(jpeg_message);
    err
}

extern "C-unwind" fn jpeg_fail(cinfo: &mut mozjpeg_sys::jpeg_common_struct) {
    std::panic::resume_unwind(Box::new(jpeg_error_text(cinfo)));
}

extern "C-unwind" fn jpeg_message(cinfo: &mut mozjpeg_sys::jpeg_common_struct, level: c_int) {
    if level < 0 {
        jpeg_fail(cinfo);
    }
}

/// libjpeg's message for its last error, without the printf arguments (not worth a C call).
fn jpeg_error_text(cinfo: &mozjpeg_sys::jpeg_common_struct) -> String {
    // SAFETY: `err` points at the manager built above, whose table is libjpeg's static one,
    // and `msg_code` is within it when it is at most `last_jpeg_message`.
    unsafe {
        let err = &*cinfo.err;
        let code = err.msg_code;
        if code > 0 && code <= err.last_jpeg_message && !err.jpeg_message_table.is_null() {
            let text = *err.jpeg_message_table.offset(code as isize);
            if !text.is_null() {
                return CStr::from_ptr(text.cast()).to_string_lossy().into_owned();
            }
        }
        format!("libjpeg error {code}")
    }
}

fn decode_jpeg(
    bytes: &[u8],
    max_pixels: u64,
    largest_width: u32,
) -> Result<(Header, Pixels), Error> {
    match catch_unwind(AssertUnwindSafe(|| {
        decode_jpeg_unguarded(bytes, max_pixels, largest_width)
    })) {
        Ok(result) => result,
        Err(payload) => Err(Error::Corrupt(match payload.downcast::<String>() {
            Ok(message) => *message,
            Err(_) => "JPEG decoder failed".to_owned(),
        })),
    }
}

fn decode_jpeg_unguarded(
    bytes: &[u8],
    max_pixels: u64,
    largest_width: u32,
) -> Result<(Header, Pixels), Error> {
    let io = |e: std::io::Error| Error::Corrupt(e.to_string());
    let mut decompress = Decompress::builder()
        .with_err(strict_error_mgr())
        .with_markers(&[Marker::APP(1), Marker::APP(14)])
        .from_mem(bytes)
        .map_err(io)?;
    let (width, height) = decompress.size();
    let (width, height) = (width as u32, height as u32);
    check_pixels(width, height, max_pixels)?;
    let mut orientation = Orientation::NoTransforms;
    let mut adobe = false;
    for marker in decompress.markers() {
        match marker.marker {
            Marker::APP(1) => {
                if let Some(tiff) = marker.data.strip_prefix(b"Exif\0\0") {
                    orientation = Orientation::from_exif_chunk(tiff).unwrap_or(orientation);
                }
            }
            Marker::APP(14) => adobe |= marker.data.starts_with(b"Adobe"),
            _ => {}
        }
    }
    let header = Header {
        width,
        height,
        orientation,
    };
    let (target_width, target_height) = stored_target(&header, largest_width);
    decompress.scale(dct_scale(width, height, target_width, target_height));
    let cmyk = matches!(
        decompress.color_space(),
        ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK
    );
    // YCbCr stays YCbCr: resizing commutes with the (linear) colour conversion, and JPEG
    // renditions want YCbCr again, so both conversions are saved.
    let ycbcr = decompress.color_space() == ColorSpace::JCS_YCbCr;
    let mut started = if cmyk {
        decompress.to_colorspace(ColorSpace::JCS_CMYK).map_err(io)?
    } else if ycbcr {
        decompress
            .to_colorspace(ColorSpace::JCS_YCbCr)
            .map_err(io)?
    } else {
        decompress.rgb().map_err(io)?
    };
    let (out_width, out_height) = (started.width() as u32, started.height() as u32);
    let mut data: Vec<u8> = started.read_scanlines().map_err(io)?;
    started.finish().map_err(io)?;
    if cmyk {
        data = cmyk_to_rgb(&data, adobe);
    }
    Ok((
        header,
        Pixels {
            width: out_width,
            height: out_height,
            alpha: false,
            ycbcr,
            data,
        },
    ))
}

/// The largest rendition's size in the stored orientation.
fn stored_target(header: &Header, largest_width: u32) -> (u32, u32) {
    let (width, height) = fit(header.displayed(), largest_width);
    if swaps_axes(header.orientation) {
        (height, width)
    } else {
        (width, height)
    }
}

/// The smallest DCT scale `n/8` (libjpeg's `scale_num`) whose output still covers the target, so
/// the final resize only ever shrinks. libjpeg rounds the scaled size up.
pub fn dct_scale(width: u32, height: u32, target_width: u32, target_height: u32) -> u8 {
    let scaled = |size: u32, n: u32| (u64::from(size) * u64::from(n)).div_ceil(8);
    (1..=8u8)
        .find(|&n| {
            scaled(width, n.into()) >= u64::from(target_width)
                && scaled(height, n.into()) >= u64::from(target_height)
        })
        .unwrap_or(8)
}

/// Naive CMYK to RGB (no ICC profile). Adobe's writers store CMYK inverted, as Photoshop does.
fn cmyk_to_rgb(cmyk: &[u8], adobe_inverted: bool) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for pixel in cmyk.chunks_exact(4) {
        let [c, m, y, k] = if adobe_inverted {
            [pixel[0], pixel[1], pixel[2], pixel[3]]
        } else {
            [
                255 - pixel[0],
                255 - pixel[1],
                255 - pixel[2],
                255 - pixel[3],
            ]
        };
        let k = u32::from(k);
        for ink in [c, m, y] {
            rgb.push(((u32::from(ink) * k + 127) / 255) as u8);
        }
    }
    rgb
}

// ---------------------------------------------------------------- PNG, GIF, WebP

fn decode_other(
    bytes: &[u8],
    format: SourceFormat,
    max_pixels: u64,
) -> Result<(Header, Pixels), Error> {
    let image_format = match format {
        SourceFormat::Png => ImageFormat::Png,
        SourceFormat::Gif => ImageFormat::Gif,
        _ => ImageFormat::WebP,
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format);
    let mut limits = image::Limits::no_limits();
    // 16-bit RGBA at the pixel limit, plus room for the decoder's own buffers.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(image_error)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, max_pixels)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    let pixels = if image.color().has_alpha() {
        let rgba = image.into_rgba8().into_raw();
        if rgba.chunks_exact(4).all(|p| p[3] == u8::MAX) {
            Pixels {
                width,
                height,
                alpha: false,
                ycbcr: false,
                data: rgba
                    .chunks_exact(4)
                    .flat_map(|p| [p[0], p[1], p[2]])
                    .collect(),
            }
        } else {
            Pixels {
                width,
                height,
                alpha: true,
                ycbcr: false,
                data: rgba,
            }
        }
    } else {
        Pixels {
            width,
            height,
            alpha: false,
            ycbcr: false,
            data: image.into_rgb8().into_raw(),
        }
    };
    Ok((
        Header {
            width,
            height,
            orientation,
        },
        pixels,
    ))
}

fn image_error(err: ImageError) -> Error {
    match err {
        ImageError::Unsupported(e) => Error::Unsupported(e.to_string()),
        ImageError::Limits(e) => {
            Error::Unsupported(format!("over the decoder's memory limit: {e}"))
        }
        other => Error::Corrupt(other.to_string()),
    }
}

// ---------------------------------------------------------------- resize, orient, encode

fn resize_and_encode(
    pixels: &Pixels,
    orientation: Orientation,
    specs: Vec<RenditionSpec>,
    settings: &Settings,
) -> Result<Vec<(RenditionSpec, Vec<u8>)>, Error> {
    // Distinct sizes, largest first: each is resized from the one before (a cascade of small
    // reductions costs less than reducing the full image each time, with no visible difference).
    let mut sizes: Vec<(u32, u32)> = specs.iter().map(|s| (s.width, s.height)).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes.dedup();
    let swap = swaps_axes(orientation);
    let mut resizer = Resizer::new();
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    let pixel_type = pixels.pixel_type();
    let mut resized: Vec<((u32, u32), Image<'static>)> = Vec::with_capacity(sizes.len());
    for displayed in sizes {
        let (width, height) = if swap {
            (displayed.1, displayed.0)
        } else {
            displayed
        };
        let source = match resized.last() {
            Some((_, image)) => {
                ImageRef::new(image.width(), image.height(), image.buffer(), pixel_type)
            }
            None => ImageRef::new(pixels.width, pixels.height, &pixels.data, pixel_type),
        }
        .map_err(|e| Error::Encode(e.to_string()))?;
        let image = if (source.width(), source.height()) == (width, height) {
            Image::from_vec_u8(width, height, source.buffer().to_vec(), pixel_type)
                .map_err(|e| Error::Encode(e.to_string()))?
        } else {
            let mut image = Image::new(width, height, pixel_type);
            resizer
                .resize(&source, &mut image, &options)
                .map_err(|e| Error::Encode(e.to_string()))?;
            image
        };
        resized.push((displayed, image));
    }
    let resized = resized
        .into_iter()
        .map(|(size, image)| Ok((size, oriented(image, pixels.alpha, orientation)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    specs
        .into_iter()
        .map(|spec| {
            let (_, image) = resized
                .iter()
                .find(|(size, _)| *size == (spec.width, spec.height))
                .ok_or_else(|| Error::Encode(format!("no {}x{} image", spec.width, spec.height)))?;
            let bytes = encode(image, pixels.ycbcr, spec.format, settings)?;
            Ok((spec, bytes))
        })
        .collect()
}

/// The resized pixels turned the way the EXIF orientation says, as an `image` buffer.
fn oriented(
    image: Image<'_>,
    alpha: bool,
    orientation: Orientation,
) -> Result<DynamicImage, Error> {
    let (width, height, buffer) = (image.width(), image.height(), image.into_vec());
    let bad = || Error::Encode("resized buffer has the wrong size".into());
    let mut out = if alpha {
        DynamicImage::ImageRgba8(image::RgbaImage::from_raw(width, height, buffer).ok_or_else(bad)?)
    } else {
        DynamicImage::ImageRgb8(image::RgbImage::from_raw(width, height, buffer).ok_or_else(bad)?)
    };
    out.apply_orientation(orientation);
    Ok(out)
}

fn encode(
    image: &DynamicImage,
    ycbcr: bool,
    format: Format,
    settings: &Settings,
) -> Result<Vec<u8>, Error> {
    if ycbcr && format != Format::Jpeg {
        let rgb = image
            .as_rgb8()
            .map(|ycc| DynamicImage::ImageRgb8(ycbcr_to_rgb(ycc)))
            .ok_or_else(|| Error::Encode("YCbCr pixels must have three channels".into()))?;
        return encode(&rgb, false, format, settings);
    }
    let (width, height) = (image.width(), image.height());
    let encode_error = |e: &dyn std::fmt::Display| {
        Error::Encode(format!("{} {width}x{height}: {e}", format.extension()))
    };
    let mut out = Vec::new();
    match format {
        Format::Jpeg => {
            let pixels = image
                .as_rgb8()
                .ok_or_else(|| encode_error(&"JPEG needs three channels"))?;
            let color = if ycbcr {
                jpeg_encoder::ColorType::Ycbcr
            } else {
                jpeg_encoder::ColorType::Rgb
            };
            let (w, h) = (
                u16::try_from(width).map_err(|e| encode_error(&e))?,
                u16::try_from(height).map_err(|e| encode_error(&e))?,
            );
            let mut encoder = jpeg_encoder::Encoder::new(&mut out, settings.jpeg_quality);
            encoder.set_chroma_subsampling_method(jpeg_encoder::ChromaSubsamplingMethod::Average);
            encoder
                .encode(pixels.as_raw(), w, h, color)
                .map_err(|e| encode_error(&e))?;
        }
        Format::Png => {
            let (color, raw) = match image {
                DynamicImage::ImageRgba8(rgba) => (png::ColorType::Rgba, rgba.as_raw()),
                DynamicImage::ImageRgb8(rgb) => (png::ColorType::Rgb, rgb.as_raw()),
                _ => return Err(encode_error(&"PNG needs RGB or RGBA pixels")),
            };
            let mut encoder = png::Encoder::new(&mut out, width, height);
            encoder.set_color(color);
            encoder.set_depth(png::BitDepth::Eight);
            encoder.set_compression(png::Compression::Fast);
            let mut writer = encoder.write_header().map_err(|e| encode_error(&e))?;
            writer.write_image_data(raw).map_err(|e| encode_error(&e))?;
            writer.finish().map_err(|e| encode_error(&e))?;
        }
        Format::Webp => {
            let encoder = match image {
                DynamicImage::ImageRgba8(rgba) => {
                    webp::Encoder::from_rgba(rgba.as_raw(), width, height)
                }
                DynamicImage::ImageRgb8(rgb) => {
                    webp::Encoder::from_rgb(rgb.as_raw(), width, height)
                }
                _ => return Err(encode_error(&"WebP needs RGB or RGBA pixels")),
            };
            let memory = encoder
                .encode_simple(false, f32::from(settings.webp_quality))
                .map_err(|e| encode_error(&format!("{e:?}")))?;
            out.extend_from_slice(&memory);
        }
    }
    Ok(out)
}

/// JFIF (full-range BT.601) YCbCr to RGB, as libjpeg converts, in 16-bit fixed point.
fn ycbcr_to_rgb(ycc: &image::RgbImage) -> image::RgbImage {
    let mut rgb = ycc.clone();
    for pixel in rgb.pixels_mut() {
        let [y, cb, cr] = pixel.0;
        let (y, cb, cr) = (i32::from(y) << 16, i32::from(cb) - 128, i32::from(cr) - 128);
        let channel = |v: i32| ((v + (1 << 15)) >> 16).clamp(0, 255) as u8;
        pixel.0 = [
            channel(y + 91_881 * cr),
            channel(y - 22_554 * cb - 46_802 * cr),
            channel(y + 116_130 * cb),
        ];
    }
    rgb
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
    fn dct_scale_covers_the_target() {
        // 6000x4000 to 1280x853: 2/8 gives 1500x1000.
        assert_eq!(dct_scale(6000, 4000, 1280, 853), 2);
        // 4000x3000 to 1280x960: 3/8 gives 1500x1125.
        assert_eq!(dct_scale(4000, 3000, 1280, 960), 3);
        // Barely larger than the target: no shrinking.
        assert_eq!(dct_scale(1400, 1000, 1280, 914), 8);
        assert_eq!(dct_scale(1, 1, 1, 1), 1);
        for (w, h, tw, th) in [
            (6000, 4000, 1280, 853),
            (3001, 17, 160, 1),
            (9999, 9999, 1280, 1280),
        ] {
            let n = u64::from(dct_scale(w, h, tw, th));
            assert!((u64::from(w) * n).div_ceil(8) >= u64::from(tw));
            assert!((u64::from(h) * n).div_ceil(8) >= u64::from(th));
        }
    }

    #[test]
    fn colour_conversions() {
        let ycc = image::RgbImage::from_raw(3, 1, vec![128, 128, 128, 76, 85, 255, 255, 128, 128])
            .unwrap();
        let rgb = ycbcr_to_rgb(&ycc);
        assert_eq!(rgb.get_pixel(0, 0).0, [128, 128, 128]);
        let red = rgb.get_pixel(1, 0).0;
        assert!(red[0] >= 250 && red[1] <= 3 && red[2] <= 3, "{red:?}");
        assert_eq!(rgb.get_pixel(2, 0).0, [255, 255, 255]);
        // Adobe CMYK is stored inverted: 255 is no ink.
        assert_eq!(cmyk_to_rgb(&[255, 0, 255, 255], true), [255, 0, 255]);
        assert_eq!(cmyk_to_rgb(&[0, 255, 0, 0], false), [255, 0, 255]);
        assert_eq!(cmyk_to_rgb(&[0, 0, 0, 255], false), [0, 0, 0]);
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
