//! Animated GIF and WebP sources: animated renditions (GIF for the primary one, animated WebP
//! beside it), frame by frame. Each frame is decoded onto the canvas, resized to every rendition
//! size and handed to that size's encoders at once, so memory holds one canvas, its resized
//! copies and the encoders' output, however many frames there are. The frame count and the
//! pixels decoded (frames times canvas) are counted first, from the container alone; past either
//! bound the renditions are the first frame, as with `ANIMATION=first-frame`.

use std::io::Cursor;
use std::os::raw::c_int;

use image::codecs::gif::GifDecoder;
use image::codecs::webp::WebPDecoder;
use image::metadata::Orientation;
use image::{AnimationDecoder, DynamicImage, Frame, ImageDecoder};

use super::colour::Transform;
use super::encode::{distinct_sizes, resized_images};
use super::{check_pixels, Pixels, Settings, SourceFormat};
use crate::error::Error;
use crate::rendition::{Format, RenditionSpec};

/// What the container says about an animation, before any pixel is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Animation {
    pub width: u32,
    pub height: u32,
    pub frames: u32,
}

/// The animation in `bytes`, if it has more than one frame. Counting stops past `max_frames`.
pub fn probe(bytes: &[u8], format: SourceFormat, max_frames: u32) -> Option<Animation> {
    let animation = match format {
        SourceFormat::Gif => probe_gif(bytes, max_frames),
        SourceFormat::Webp => probe_webp(bytes, max_frames),
        _ => None,
    }?;
    (animation.frames > 1).then_some(animation)
}

fn probe_gif(bytes: &[u8], max_frames: u32) -> Option<Animation> {
    let mut options = gif::DecodeOptions::new();
    options.skip_frame_decoding(true);
    options.set_color_output(gif::ColorOutput::Indexed);
    let mut decoder = options.read_info(Cursor::new(bytes)).ok()?;
    let (width, height) = (u32::from(decoder.width()), u32::from(decoder.height()));
    let mut frames = 0;
    // A broken frame ends the count: the decoder proper says what is wrong with it.
    while let Ok(Some(_)) = decoder.read_next_frame() {
        frames += 1;
        if frames > max_frames {
            break;
        }
    }
    Some(Animation {
        width,
        height,
        frames,
    })
}

/// An extended WebP (`VP8X`) with the animation flag, and its `ANMF` chunks.
fn probe_webp(bytes: &[u8], max_frames: u32) -> Option<Animation> {
    let vp8x = bytes.get(12..30).filter(|h| h.starts_with(b"VP8X"))?;
    if vp8x[8] & 0x02 == 0 {
        return None;
    }
    let size24 = |b: &[u8]| u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16;
    let (width, height) = (size24(&vp8x[12..15]) + 1, size24(&vp8x[15..18]) + 1);
    let mut frames = 0;
    let mut at = 12;
    while let Some(header) = bytes.get(at..at + 8) {
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if &header[..4] == b"ANMF" {
            frames += 1;
            if frames > max_frames {
                break;
            }
        }
        at = at.checked_add(8 + size + size % 2)?;
    }
    Some(Animation {
        width,
        height,
        frames,
    })
}

/// Whether an animation is within the bounds; if not, why not (for the log).
pub fn within_bounds(animation: &Animation, settings: &Settings) -> Result<(), String> {
    let decoded = u64::from(animation.frames)
        .saturating_mul(u64::from(animation.width) * u64::from(animation.height));
    if animation.frames > settings.max_frames {
        Err(format!(
            "animation of more than {} frames: first frame only",
            settings.max_frames
        ))
    } else if decoded > settings.max_animation_pixels {
        Err(format!(
            "animation of {} frames of {}x{} ({decoded} pixels, more than {}): first frame only",
            animation.frames, animation.width, animation.height, settings.max_animation_pixels
        ))
    } else {
        Ok(())
    }
}

/// Renders every spec (already made animated: GIF or WebP) frame by frame.
pub fn render(
    bytes: &[u8],
    format: SourceFormat,
    animation: &Animation,
    orientation: Orientation,
    colour: Option<&Transform>,
    specs: Vec<RenditionSpec>,
    settings: &Settings,
) -> Result<Vec<(RenditionSpec, Vec<u8>)>, Error> {
    check_pixels(animation.width, animation.height, settings.max_pixels)?;
    let mut limits = image::Limits::no_limits();
    limits.max_alloc = Some(
        (u64::from(animation.width) * u64::from(animation.height))
            .saturating_mul(16)
            .saturating_add(64 << 20),
    );
    let frames = match format {
        SourceFormat::Gif => {
            let mut decoder = GifDecoder::new(Cursor::new(bytes)).map_err(frame_error)?;
            decoder.set_limits(limits).map_err(frame_error)?;
            decoder.into_frames()
        }
        _ => {
            let mut decoder = WebPDecoder::new(Cursor::new(bytes)).map_err(frame_error)?;
            decoder.set_limits(limits).map_err(frame_error)?;
            decoder.into_frames()
        }
    };
    let sizes = distinct_sizes(&specs);
    let mut encoders = specs
        .iter()
        .map(|spec| FrameEncoder::new(spec, settings))
        .collect::<Result<Vec<_>, Error>>()?;
    let mut elapsed_ms: i64 = 0;
    for frame in frames.take(settings.max_frames as usize) {
        let frame = frame.map_err(frame_error)?;
        let delay_ms = shown_for_ms(&frame);
        let canvas = frame.into_buffer();
        let (width, height) = canvas.dimensions();
        let pixels = Pixels::srgb(width, height, true, canvas.into_raw());
        let resized = resized_images(&pixels, orientation, colour, &sizes)?;
        for (spec, encoder) in specs.iter().zip(&mut encoders) {
            let (_, image) = resized
                .iter()
                .find(|(size, _)| *size == (spec.width, spec.height))
                .ok_or_else(|| Error::Encode(format!("no {}x{} frame", spec.width, spec.height)))?;
            encoder.add(image, elapsed_ms, delay_ms)?;
        }
        elapsed_ms += i64::from(delay_ms);
    }
    specs
        .into_iter()
        .zip(encoders)
        .map(|(spec, encoder)| Ok((spec, encoder.finish(elapsed_ms)?)))
        .collect()
}

/// How long a frame is shown, as browsers do: a delay under 20 ms is shown for 100 ms.
fn shown_for_ms(frame: &Frame) -> u32 {
    let (numerator, denominator) = frame.delay().numer_denom_ms();
    let ms = numerator / denominator.max(1);
    if ms < 20 {
        100
    } else {
        ms
    }
}

fn frame_error(err: image::ImageError) -> Error {
    match err {
        image::ImageError::Limits(e) => Error::Unsupported(format!(
            "an animation frame is over the decoder's memory limit: {e}"
        )),
        image::ImageError::Unsupported(e) => Error::Unsupported(e.to_string()),
        other => Error::Corrupt(format!("animation frame: {other}")),
    }
}

enum FrameEncoder {
    Gif(gif::Encoder<Vec<u8>>),
    Webp(WebpAnimation),
}

impl FrameEncoder {
    fn new(spec: &RenditionSpec, settings: &Settings) -> Result<Self, Error> {
        let error = |e: &dyn std::fmt::Display| {
            Error::Encode(format!(
                "animated {} {}x{}: {e}",
                spec.format.extension(),
                spec.width,
                spec.height
            ))
        };
        match spec.format {
            Format::Gif => {
                let (width, height) = (
                    u16::try_from(spec.width).map_err(|e| error(&e))?,
                    u16::try_from(spec.height).map_err(|e| error(&e))?,
                );
                let mut encoder =
                    gif::Encoder::new(Vec::new(), width, height, &[]).map_err(|e| error(&e))?;
                encoder
                    .set_repeat(gif::Repeat::Infinite)
                    .map_err(|e| error(&e))?;
                Ok(FrameEncoder::Gif(encoder))
            }
            Format::Webp => Ok(FrameEncoder::Webp(
                WebpAnimation::new(spec.width, spec.height, settings.webp_quality)
                    .map_err(|e| error(&e))?,
            )),
            other => Err(error(&format!("{other:?} is not an animated format"))),
        }
    }

    fn add(&mut self, image: &DynamicImage, at_ms: i64, delay_ms: u32) -> Result<(), Error> {
        let rgba = image.to_rgba8();
        let (width, height) = rgba.dimensions();
        match self {
            FrameEncoder::Gif(encoder) => {
                let mut data = rgba.into_raw();
                // NeuQuant at speed 10: a good palette per frame in a few milliseconds.
                let mut frame =
                    gif::Frame::from_rgba_speed(width as u16, height as u16, &mut data, 10);
                frame.delay = u16::try_from(delay_ms.div_ceil(10)).unwrap_or(u16::MAX);
                frame.dispose = gif::DisposalMethod::Background;
                encoder
                    .write_frame(&frame)
                    .map_err(|e| Error::Encode(format!("animated gif frame: {e}")))
            }
            FrameEncoder::Webp(encoder) => encoder
                .add(rgba.as_raw(), width, height, at_ms)
                .map_err(|e| Error::Encode(format!("animated webp frame: {e}"))),
        }
    }

    fn finish(self, end_ms: i64) -> Result<Vec<u8>, Error> {
        match self {
            FrameEncoder::Gif(encoder) => encoder
                .into_inner()
                .map_err(|e| Error::Encode(format!("animated gif: {e}"))),
            FrameEncoder::Webp(encoder) => encoder
                .finish(end_ms)
                .map_err(|e| Error::Encode(format!("animated webp: {e}"))),
        }
    }
}

/// libwebp's animation encoder, fed one frame at a time (it keeps its own copy of the canvas it
/// needs, so each frame's picture is freed once added).
struct WebpAnimation {
    encoder: *mut libwebp_sys::WebPAnimEncoder,
    config: libwebp_sys::WebPConfig,
}

impl WebpAnimation {
    fn new(width: u32, height: u32, quality: u8) -> Result<Self, String> {
        // SAFETY: the options and config are initialised by libwebp's own init functions before
        // use; the encoder pointer is checked for null and owned by this value (freed in Drop).
        unsafe {
            let mut options =
                std::mem::MaybeUninit::<libwebp_sys::WebPAnimEncoderOptions>::uninit();
            let abi = libwebp_sys::WEBP_MUX_ABI_VERSION as c_int;
            if libwebp_sys::WebPAnimEncoderOptionsInitInternal(options.as_mut_ptr(), abi) == 0 {
                return Err("libwebp's animation options".into());
            }
            let mut options = options.assume_init();
            options.allow_mixed = 0;
            let encoder = libwebp_sys::WebPAnimEncoderNewInternal(
                width as c_int,
                height as c_int,
                &options,
                abi,
            );
            if encoder.is_null() {
                return Err("libwebp's animation encoder".into());
            }
            let mut config = std::mem::MaybeUninit::<libwebp_sys::WebPConfig>::uninit();
            if libwebp_sys::WebPConfigInitInternal(
                config.as_mut_ptr(),
                libwebp_sys::WebPPreset::WEBP_PRESET_DEFAULT,
                f32::from(quality),
                libwebp_sys::WEBP_ENCODER_ABI_VERSION as c_int,
            ) == 0
            {
                libwebp_sys::WebPAnimEncoderDelete(encoder);
                return Err("libwebp's configuration".into());
            }
            Ok(WebpAnimation {
                encoder,
                config: config.assume_init(),
            })
        }
    }

    fn add(&mut self, rgba: &[u8], width: u32, height: u32, at_ms: i64) -> Result<(), String> {
        if rgba.len() != width as usize * height as usize * 4 {
            return Err("frame buffer of the wrong size".into());
        }
        // SAFETY: the picture is initialised by libwebp, imported from a buffer of the size
        // checked above, and freed on every path; the encoder copies what it keeps.
        unsafe {
            let mut picture = std::mem::MaybeUninit::<libwebp_sys::WebPPicture>::uninit();
            if !libwebp_sys::WebPPictureInit(picture.as_mut_ptr()) {
                return Err("libwebp's picture".into());
            }
            let mut picture = picture.assume_init();
            picture.use_argb = 1;
            picture.width = width as c_int;
            picture.height = height as c_int;
            let imported = libwebp_sys::WebPPictureImportRGBA(
                &mut picture,
                rgba.as_ptr(),
                (width * 4) as c_int,
            );
            let added = imported != 0
                && libwebp_sys::WebPAnimEncoderAdd(
                    self.encoder,
                    &mut picture,
                    at_ms as c_int,
                    &self.config,
                ) != 0;
            let code = picture.error_code;
            libwebp_sys::WebPPictureFree(&mut picture);
            if added {
                Ok(())
            } else {
                Err(format!("{code:?}"))
            }
        }
    }

    fn finish(self, end_ms: i64) -> Result<Vec<u8>, String> {
        // SAFETY: a null frame ends the animation at `end_ms`; the assembled data is copied out
        // and then cleared; the encoder is freed by Drop.
        unsafe {
            libwebp_sys::WebPAnimEncoderAdd(
                self.encoder,
                std::ptr::null_mut(),
                end_ms as c_int,
                std::ptr::null(),
            );
            let mut data = std::mem::MaybeUninit::<libwebp_sys::WebPData>::zeroed().assume_init();
            if libwebp_sys::WebPAnimEncoderAssemble(self.encoder, &mut data) == 0 {
                return Err("libwebp could not assemble the animation".into());
            }
            let bytes = std::slice::from_raw_parts(data.bytes, data.size).to_vec();
            libwebp_sys::WebPDataClear(&mut data);
            Ok(bytes)
        }
    }
}

impl Drop for WebpAnimation {
    fn drop(&mut self) {
        // SAFETY: the pointer came from WebPAnimEncoderNewInternal and is freed only here.
        unsafe { libwebp_sys::WebPAnimEncoderDelete(self.encoder) }
    }
}

// SAFETY: the encoder is used by one thread at a time (it moves with its owner, never shared).
unsafe impl Send for WebpAnimation {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webp_animations_are_counted_from_their_chunks() {
        let mut file = b"RIFF\0\0\0\0WEBPVP8X".to_vec();
        file.extend_from_slice(&10u32.to_le_bytes());
        file.extend_from_slice(&[0x02, 0, 0, 0, 99, 0, 0, 49, 0, 0]);
        for _ in 0..3 {
            file.extend_from_slice(b"ANMF");
            file.extend_from_slice(&3u32.to_le_bytes());
            file.extend_from_slice(&[1, 2, 3, 0]);
        }
        let animation = probe(&file, SourceFormat::Webp, 300).unwrap();
        assert_eq!(
            animation,
            Animation {
                width: 100,
                height: 50,
                frames: 3
            }
        );
        assert_eq!(probe(&file, SourceFormat::Webp, 2).unwrap().frames, 3);
        // Without the animation flag it is a still image.
        file[20] = 0;
        assert!(probe(&file, SourceFormat::Webp, 300).is_none());
    }

    #[test]
    fn bounds_are_frames_and_decoded_pixels() {
        let settings = Settings {
            max_frames: 10,
            max_animation_pixels: 1_000_000,
            ..Settings::default()
        };
        let animation = |frames, side| Animation {
            width: side,
            height: side,
            frames,
        };
        assert!(within_bounds(&animation(10, 316), &settings).is_ok());
        assert!(within_bounds(&animation(11, 10), &settings).is_err());
        assert!(within_bounds(&animation(10, 317), &settings).is_err());
    }
}
