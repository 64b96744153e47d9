//! Property-based fuzzing of what the image processor takes from outside: S3 event notification
//! bodies (SQS, SNS-wrapped) and image bytes (signatures, headers, truncations, bit flips, pixel
//! bombs). Bounded here; longer on demand with `PROPTEST_CASES`.

use std::io::Cursor;

use image::{ImageBuffer, ImageFormat, Rgba};
use image_processor::imaging::{render, Settings};
use image_processor::rendition::{plan, Format, RenditionSpec};
use image_processor::{event, Config};
use proptest::prelude::*;
use serde_json::{json, Value};
use shared::config::Env;
use shared::ObjectKey;
use test_support::json::mutate;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(400),
        ..ProptestConfig::default()
    }
}

fn processor_config() -> Config {
    Config::from_env(&Env::from_pairs([("TASK_TABLE", "tasks")])).unwrap()
}

fn settings() -> Settings {
    Settings {
        max_pixels: 4_000_000,
        jpeg_quality: 80,
        webp_quality: 80,
        ..Settings::default()
    }
}

fn renditions(
    displayed: (u32, u32),
    alpha: bool,
) -> Result<Vec<RenditionSpec>, image_processor::Error> {
    plan(
        &processor_config(),
        &ObjectKey::new("images/fuzz.jpg").unwrap(),
        displayed,
        alpha,
    )
}

fn encoded(format: ImageFormat) -> Vec<u8> {
    let picture = ImageBuffer::from_fn(48, 32, |x, y| {
        Rgba([(x * 5) as u8, (y * 7) as u8, 128, 200])
    });
    let mut out = Cursor::new(Vec::new());
    match format {
        ImageFormat::Jpeg => image::DynamicImage::ImageRgba8(picture)
            .to_rgb8()
            .write_to(&mut out, format)
            .unwrap(),
        _ => picture.write_to(&mut out, format).unwrap(),
    }
    out.into_inner()
}

fn sample_notification() -> Value {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-25T08:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "overseas-origin"},
               "object": {"key": "images/a+b.jpg", "size": 1024, "eTag": "abc", "sequencer": "0055AED6DCD90281E5"}}
    }]})
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
    ]
}

#[test]
fn a_declared_pixel_bomb_is_refused_before_decoding() {
    // A PNG whose header declares 100000 x 100000 pixels and carries no pixel data.
    let mut png = encoded(ImageFormat::Png);
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let started = std::time::Instant::now();
    assert!(render(&png, &settings(), 1280, renditions).is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn event_bodies_never_panic(text in ".{0,300}") {
        let _ = event::parse_body(&text);
    }

    #[test]
    fn mutated_notifications_parse_or_fail_cleanly(path in prop::collection::vec(any::<usize>(), 0..7), replacement in leaf(), wrap in any::<bool>()) {
        let mut body = sample_notification();
        mutate(&mut body, &path, replacement);
        let text = if wrap {
            json!({"Type": "Notification", "Message": body.to_string()}).to_string()
        } else {
            body.to_string()
        };
        let _ = event::parse_body(&text);
    }

    #[test]
    fn arbitrary_bytes_behind_a_signature_never_panic(kind in 0usize..4, tail in prop::collection::vec(any::<u8>(), 0..512)) {
        let signature: &[u8] = match kind {
            0 => &[0xFF, 0xD8, 0xFF],
            1 => &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A],
            2 => b"GIF89a",
            _ => b"RIFF\0\0\0\0WEBP",
        };
        let bytes = [signature, &tail].concat();
        prop_assert!(render(&bytes, &settings(), 1280, renditions).is_err());
    }

    #[test]
    fn truncated_or_flipped_images_fail_cleanly_or_render_within_limits(
        format in prop_oneof![Just(ImageFormat::Jpeg), Just(ImageFormat::Png), Just(ImageFormat::Gif), Just(ImageFormat::WebP)],
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = encoded(format);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= value;
        }
        let len = cut.index(bytes.len() + 1);
        bytes.truncate(len.max(1));
        if let Ok(rendered) = render(&bytes, &settings(), 1280, renditions) {
            for (spec, encoded) in &rendered.renditions {
                prop_assert!(spec.width <= 48 && spec.height <= 32);
                prop_assert!(matches!(spec.format, Format::Jpeg | Format::Png | Format::Webp));
                prop_assert!(!encoded.is_empty());
            }
        }
    }
}
