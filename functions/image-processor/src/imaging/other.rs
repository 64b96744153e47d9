//! PNG, GIF and WebP: the pure-Rust `image` crate, with a memory limit.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};

use super::{check_pixels, metadata, Header, Pixels, SourceFormat};
use crate::error::Error;

pub(super) fn decode_other(
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
    let decoder = reader.into_decoder().map_err(image_error)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, max_pixels)?;
    if format == SourceFormat::Gif {
        // A frame may reach past the logical screen the header states; the decoder allocates it.
        if let Some((width, height)) = metadata::gif_extent(bytes) {
            check_pixels(width, height, max_pixels)?;
        }
    }
    let metadata = metadata::read(bytes, format);
    let image = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    let pixels = if image.color().has_alpha() {
        let rgba = image.into_rgba8().into_raw();
        if rgba.chunks_exact(4).all(|p| p[3] == u8::MAX) {
            let rgb = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]);
            Pixels::srgb(width, height, false, rgb.collect())
        } else {
            Pixels::srgb(width, height, true, rgba)
        }
    } else {
        Pixels::srgb(width, height, false, image.into_rgb8().into_raw())
    };
    Ok((
        Header {
            width,
            height,
            orientation: metadata.orientation.unwrap_or(Orientation::NoTransforms),
            icc: metadata.icc,
            warnings: metadata.warnings,
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
