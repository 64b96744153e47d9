//! Resize, orient, encode.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::DynamicImage;

use super::colour::{self, Transform};
use super::{swaps_axes, Pixels, Settings};
use crate::error::Error;
use crate::rendition::{Format, RenditionSpec};

pub(super) fn resize_and_encode(
    pixels: &Pixels,
    orientation: Orientation,
    colour: Option<&Transform>,
    specs: Vec<RenditionSpec>,
    settings: &Settings,
) -> Result<Vec<(RenditionSpec, Vec<u8>)>, Error> {
    let sizes = distinct_sizes(&specs);
    let resized = resized_images(pixels, orientation, colour, &sizes)?;
    // Converted pixels are RGB, and say they are sRGB; the others are as their source was.
    let ycbcr = pixels.ycbcr && colour.is_none();
    let tag = colour.is_some();
    specs
        .into_iter()
        .map(|spec| {
            let (_, image) = resized
                .iter()
                .find(|(size, _)| *size == (spec.width, spec.height))
                .ok_or_else(|| Error::Encode(format!("no {}x{} image", spec.width, spec.height)))?;
            let bytes = encode(image, ycbcr, tag, spec.format, settings)?;
            Ok((spec, bytes))
        })
        .collect()
}

/// The specs' displayed sizes, distinct, largest first: the order the resize cascade takes.
pub(super) fn distinct_sizes(specs: &[RenditionSpec]) -> Vec<(u32, u32)> {
    let mut sizes: Vec<(u32, u32)> = specs.iter().map(|s| (s.width, s.height)).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes.dedup();
    sizes
}

/// An image resized, with its displayed size (width, height).
pub(super) type Resized = ((u32, u32), DynamicImage);

/// The pixels resized to each of `sizes` (displayed width and height, distinct, largest first),
/// each turned the way the orientation says and converted to sRGB through `colour`.
pub(super) fn resized_images(
    pixels: &Pixels,
    orientation: Orientation,
    colour: Option<&Transform>,
    sizes: &[(u32, u32)],
) -> Result<Vec<Resized>, Error> {
    // Each size is resized from the one before (a cascade of small reductions costs less than
    // reducing the full image each time, with no visible difference).
    let swap = swaps_axes(orientation);
    let mut resizer = Resizer::new();
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    let pixel_type = pixels.pixel_type();
    let mut resized: Vec<((u32, u32), Image<'static>)> = Vec::with_capacity(sizes.len());
    for &displayed in sizes {
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
    resized
        .into_iter()
        .map(|(size, image)| {
            let mut image = oriented(image, pixels.alpha, orientation)?;
            if let Some(transform) = colour {
                image = to_srgb(image, pixels.ycbcr, transform)?;
            }
            Ok((size, image))
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

/// A resized image converted to sRGB through its source's profile.
fn to_srgb(image: DynamicImage, ycbcr: bool, transform: &Transform) -> Result<DynamicImage, Error> {
    let mut image = if ycbcr {
        DynamicImage::ImageRgb8(ycbcr_to_rgb(
            image
                .as_rgb8()
                .ok_or_else(|| Error::Encode("YCbCr pixels must have three channels".into()))?,
        ))
    } else {
        image
    };
    match &mut image {
        DynamicImage::ImageRgb8(rgb) => colour::apply(transform, rgb.as_mut())?,
        DynamicImage::ImageRgba8(rgba) => colour::apply(transform, rgba.as_mut())?,
        _ => return Err(Error::Encode("colour conversion needs RGB or RGBA".into())),
    }
    Ok(image)
}

/// `tag`: embed the sRGB profile (the pixels were converted from another colour space).
fn encode(
    image: &DynamicImage,
    ycbcr: bool,
    tag: bool,
    format: Format,
    settings: &Settings,
) -> Result<Vec<u8>, Error> {
    if ycbcr && format != Format::Jpeg {
        let rgb = image
            .as_rgb8()
            .map(|ycc| DynamicImage::ImageRgb8(ycbcr_to_rgb(ycc)))
            .ok_or_else(|| Error::Encode("YCbCr pixels must have three channels".into()))?;
        return encode(&rgb, false, tag, format, settings);
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
            let icc = tag.then_some(colour::SRGB_PROFILE);
            out = encode_jpeg(
                pixels.as_raw(),
                width,
                height,
                ycbcr,
                icc,
                settings.jpeg_quality,
            )
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
            if tag {
                // PNG's own sRGB chunk says it in 13 bytes.
                encoder.set_source_srgb(png::SrgbRenderingIntent::Perceptual);
            }
            let mut writer = encoder.write_header().map_err(|e| encode_error(&e))?;
            writer.write_image_data(raw).map_err(|e| encode_error(&e))?;
            writer.finish().map_err(|e| encode_error(&e))?;
        }
        Format::Avif => out = encode_avif(image, settings).map_err(|e| encode_error(&e))?,
        Format::Gif => {
            return Err(encode_error(
                &"GIF renditions are made from animations, frame by frame",
            ))
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
            if tag {
                out = with_icc_chunk(&memory, width, height, colour::SRGB_PROFILE);
            } else {
                out.extend_from_slice(&memory);
            }
        }
    }
    Ok(out)
}

/// JPEG with libjpeg-turbo's encoder (MozJPEG's build, the one that decodes): baseline,
/// interleaved (every decoder reads it in one pass), 4:2:0, MozJPEG's default quantisation tables
/// (N. Robidoux's) scaled to `quality`, and Huffman tables made for the image. With JPEG_QUALITY
/// 79 the renditions score above libjpeg's standard tables at quality 80 (what sharp writes) in
/// 0.90-0.93x the bytes (docs/images.md). `ycbcr`: the samples are JFIF YCbCr already.
fn encode_jpeg(
    samples: &[u8],
    width: u32,
    height: u32,
    ycbcr: bool,
    icc: Option<&[u8]>,
    quality: u8,
) -> Result<Vec<u8>, String> {
    let encode = || -> std::io::Result<Vec<u8>> {
        let mut compress = mozjpeg::Compress::new(if ycbcr {
            mozjpeg::ColorSpace::JCS_YCbCr
        } else {
            mozjpeg::ColorSpace::JCS_RGB
        });
        // libjpeg-turbo's defaults (no trellis quantisation, no progressive scan search).
        compress.set_fastest_defaults();
        compress.set_size(width as usize, height as usize);
        let tables = mozjpeg::qtable::NRobidoux.scaled(f32::from(quality), f32::from(quality));
        compress.set_luma_qtable(&tables);
        compress.set_chroma_qtable(&tables);
        compress.set_chroma_sampling_pixel_sizes((2, 2), (2, 2));
        compress.set_optimize_coding(true);
        let mut started = compress.start_compress(Vec::with_capacity(samples.len() / 8))?;
        if let Some(icc) = icc {
            started.write_icc_profile(icc);
        }
        started.write_scanlines(samples)?;
        started.finish()
    };
    // libjpeg reports errors by unwinding (the mozjpeg crate's error manager).
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(encode)) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(payload) => Err(payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "libjpeg failed".into())),
    }
}

/// AVIF with rav1e, 8-bit, on the invocation's own thread (`IMAGE_CONCURRENCY` images run at
/// once already). The colour is sRGB, said by the file's colour information box.
fn encode_avif(image: &DynamicImage, settings: &Settings) -> Result<Vec<u8>, ravif::Error> {
    let encoder = ravif::Encoder::new()
        .with_quality(f32::from(settings.avif_quality))
        .with_alpha_quality(f32::from(settings.avif_quality))
        .with_speed(settings.avif_speed)
        .with_bit_depth(ravif::BitDepth::Eight)
        .with_num_threads(Some(1));
    let (width, height) = (image.width() as usize, image.height() as usize);
    let encoded = match image {
        DynamicImage::ImageRgba8(rgba) => {
            let pixels: Vec<ravif::RGBA8> = rgba
                .as_raw()
                .chunks_exact(4)
                .map(|p| ravif::RGBA8::new(p[0], p[1], p[2], p[3]))
                .collect();
            encoder.encode_rgba(ravif::Img::new(&pixels[..], width, height))?
        }
        other => {
            let rgb = other.to_rgb8();
            let pixels: Vec<ravif::RGB8> = rgb
                .as_raw()
                .chunks_exact(3)
                .map(|p| ravif::RGB8::new(p[0], p[1], p[2]))
                .collect();
            encoder.encode_rgb(ravif::Img::new(&pixels[..], width, height))?
        }
    };
    Ok(encoded.avif_file)
}

/// A simple-format WebP file (`VP8 ` or `VP8L`, or an extended one) with an `ICCP` chunk: the
/// extended layout (RIFF, `VP8X` with the ICC flag, `ICCP`, then the image's chunks).
fn with_icc_chunk(webp: &[u8], width: u32, height: u32, icc: &[u8]) -> Vec<u8> {
    const ICC_FLAG: u8 = 0x20;
    const ALPHA_FLAG: u8 = 0x10;
    let chunk = |out: &mut Vec<u8>, fourcc: &[u8], body: &[u8]| {
        out.extend_from_slice(fourcc);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        if body.len() % 2 == 1 {
            out.push(0);
        }
    };
    let body = &webp[12..];
    let (mut vp8x, rest) = if body.starts_with(b"VP8X") {
        let mut header = body[8..18].to_vec();
        header[0] |= ICC_FLAG;
        (header, &body[18..])
    } else {
        let mut header = vec![ICC_FLAG, 0, 0, 0];
        header.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
        header.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
        if body.starts_with(b"VP8L") && body.get(8 + 4).is_some_and(|b| b & 0x10 != 0) {
            // VP8L's header has an "alpha is used" bit (bit 28 of the 32 after the signature).
            header[0] |= ALPHA_FLAG;
        }
        (header, body)
    };
    vp8x.truncate(10);
    let mut out = b"RIFF\0\0\0\0WEBP".to_vec();
    chunk(&mut out, b"VP8X", &vp8x);
    chunk(&mut out, b"ICCP", icc);
    out.extend_from_slice(rest);
    let size = (out.len() - 8) as u32;
    out[4..8].copy_from_slice(&size.to_le_bytes());
    out
}

/// JFIF (full-range BT.601) YCbCr to RGB, as libjpeg converts, in 16-bit fixed point.
pub(super) fn ycbcr_to_rgb(ycc: &image::RgbImage) -> image::RgbImage {
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
    fn colour_conversions() {
        let ycc = image::RgbImage::from_raw(3, 1, vec![128, 128, 128, 76, 85, 255, 255, 128, 128])
            .unwrap();
        let rgb = ycbcr_to_rgb(&ycc);
        assert_eq!(rgb.get_pixel(0, 0).0, [128, 128, 128]);
        let red = rgb.get_pixel(1, 0).0;
        assert!(red[0] >= 250 && red[1] <= 3 && red[2] <= 3, "{red:?}");
        assert_eq!(rgb.get_pixel(2, 0).0, [255, 255, 255]);
    }
}
