//! Animated GIF and WebP sources through the very pipeline the Lambda runs: animated renditions
//! (GIF, animated WebP) with every frame and its timing, or the first frame by configuration or
//! past the bounds.

use std::io::Cursor;

use image::codecs::gif::{GifDecoder, GifEncoder};
use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, Delay, Frame, RgbaImage};
use image_processor::imaging::{render, Rendered, Settings};
use image_processor::rendition::{plan, Format};
use image_processor::Config;
use shared::config::Env;
use shared::ObjectKey;

const COLOURS: [[u8; 4]; 3] = [[220, 30, 30, 255], [30, 200, 30, 255], [30, 30, 220, 255]];
const DELAYS_MS: [u32; 3] = [100, 250, 500];

fn frames(width: u32, height: u32) -> Vec<Frame> {
    COLOURS
        .iter()
        .zip(DELAYS_MS)
        .map(|(colour, ms)| {
            Frame::from_parts(
                RgbaImage::from_pixel(width, height, image::Rgba(*colour)),
                0,
                0,
                Delay::from_numer_denom_ms(ms, 1),
            )
        })
        .collect()
}

fn gif(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut out);
        encoder.encode_frames(frames(width, height)).unwrap();
    }
    out
}

fn animated_webp(width: u32, height: u32) -> Vec<u8> {
    let config = webp::WebPConfig::new().unwrap();
    let data: Vec<Vec<u8>> = frames(width, height)
        .into_iter()
        .map(|f| f.into_buffer().into_raw())
        .collect();
    let mut encoder = webp::AnimEncoder::new(width, height, &config);
    let mut at = 0;
    for (pixels, ms) in data.iter().zip(DELAYS_MS) {
        encoder.add_frame(webp::AnimFrame::from_rgba(pixels, width, height, at));
        at += ms as i32;
    }
    encoder.encode().to_vec()
}

fn rendered(bytes: &[u8], env: &[(&str, &str)]) -> Rendered {
    let mut pairs = vec![
        ("TASK_TABLE", "tasks"),
        ("RENDITION_WIDTHS", "40,120"),
        ("WEBP_RENDITIONS", "true"),
        ("AVIF_RENDITIONS", "true"),
    ];
    pairs.extend_from_slice(env);
    let config = Config::from_env(&Env::from_pairs(pairs)).unwrap();
    let key = ObjectKey::new("images/spinner.gif").unwrap();
    render(
        bytes,
        &Settings::from_config(&config),
        120,
        |displayed, alpha| plan(&config, &key, displayed, alpha),
    )
    .unwrap()
}

/// Each frame's centre colour and delay.
fn decoded<'a>(frames: impl AnimationDecoder<'a>) -> Vec<([u8; 4], u32)> {
    frames
        .into_frames()
        .map(|frame| {
            let frame = frame.unwrap();
            let (n, d) = frame.delay().numer_denom_ms();
            let buffer = frame.buffer();
            let centre = buffer.get_pixel(buffer.width() / 2, buffer.height() / 2).0;
            (centre, n / d)
        })
        .collect()
}

/// Every frame's colour as made, and its delay as the source says it (libwebp's animation
/// encoder, which made the WebP source, sets the last frame's duration its own way).
fn assert_frames(what: &str, frames: &[([u8; 4], u32)], source: &[([u8; 4], u32)]) {
    assert_eq!(frames.len(), 3, "{what}: {frames:?}");
    for (((colour, ms), want), (_, want_ms)) in frames.iter().zip(&COLOURS).zip(source) {
        let off = colour
            .iter()
            .zip(want)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(off <= 12, "{what}: frame {colour:?}, wanted {want:?}");
        // GIF counts in hundredths of a second.
        assert!(
            ms.abs_diff(*want_ms) < 10,
            "{what}: delay {ms}, source {want_ms}"
        );
    }
}

#[test]
fn animated_gifs_and_webps_get_animated_renditions_with_every_frame_and_delay() {
    for (name, source) in [("gif", gif(200, 100)), ("webp", animated_webp(200, 100))] {
        let out = rendered(&source, &[]);
        assert_eq!(out.source.frames, 3, "{name}");
        let source_frames = match name {
            "gif" => decoded(GifDecoder::new(Cursor::new(&source)).unwrap()),
            _ => decoded(WebPDecoder::new(Cursor::new(&source)).unwrap()),
        };
        assert_eq!(
            source_frames
                .iter()
                .map(|f| f.1)
                .take(2)
                .collect::<Vec<_>>(),
            DELAYS_MS[..2]
        );
        let formats: Vec<(Format, u32, String)> = out
            .renditions
            .iter()
            .map(|(spec, _)| (spec.format, spec.width, spec.key.to_string()))
            .collect();
        // A GIF and an animated WebP per width; no AVIF for an animation.
        assert_eq!(
            formats,
            [
                (
                    Format::Gif,
                    40,
                    "thumbnails/images/spinner.gif/40.gif".to_owned()
                ),
                (
                    Format::Webp,
                    40,
                    "thumbnails/images/spinner.gif/40.webp".to_owned()
                ),
                (
                    Format::Gif,
                    120,
                    "thumbnails/images/spinner.gif/120.gif".to_owned()
                ),
                (
                    Format::Webp,
                    120,
                    "thumbnails/images/spinner.gif/120.webp".to_owned()
                ),
            ],
            "{name}"
        );
        for (spec, bytes) in &out.renditions {
            let what = format!("{name} to {}", spec.key);
            let frames = match spec.format {
                Format::Gif => decoded(GifDecoder::new(Cursor::new(bytes)).unwrap()),
                _ => decoded(WebPDecoder::new(Cursor::new(bytes)).unwrap()),
            };
            assert_frames(&what, &frames, &source_frames);
            let size = image::load_from_memory(bytes).unwrap();
            assert_eq!(
                (size.width(), size.height()),
                (spec.width, spec.height),
                "{what}"
            );
        }
    }
}

#[test]
fn first_frame_by_configuration_or_past_the_bounds() {
    let source = gif(200, 100);
    for (env, warned) in [
        (&[("ANIMATION", "first-frame")][..], false),
        (&[("MAX_FRAMES", "2")][..], true),
        (&[("MAX_ANIMATION_PIXELS", "50000")][..], true),
    ] {
        let out = rendered(&source, env);
        assert_eq!(out.source.frames, 1, "{env:?}");
        let formats: Vec<Format> = out.renditions.iter().map(|(spec, _)| spec.format).collect();
        assert_eq!(
            formats,
            [
                Format::Jpeg,
                Format::Webp,
                Format::Avif,
                Format::Jpeg,
                Format::Webp,
                Format::Avif
            ],
            "{env:?}"
        );
        let avif = &out.renditions[2].1;
        assert_eq!(&avif[4..12], b"ftypavif", "{env:?}: an AVIF file");
        let first = image::load_from_memory(&out.renditions[0].1)
            .unwrap()
            .to_rgb8();
        let centre = first.get_pixel(20, 10).0;
        assert!(centre[0] > 180 && centre[1] < 80, "{env:?}: {centre:?}");
        assert_eq!(
            out.warnings.iter().any(|w| w.contains("first frame only")),
            warned,
            "{env:?}: {:?}",
            out.warnings
        );
    }
}

#[test]
fn a_single_frame_gif_is_a_still_image() {
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut out);
        encoder
            .encode_frames(frames(60, 30).into_iter().take(1))
            .unwrap();
    }
    let rendered = rendered(&out, &[]);
    assert_eq!(rendered.source.frames, 1);
    assert_eq!(rendered.renditions[0].0.format, Format::Jpeg);
}
