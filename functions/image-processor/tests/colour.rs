//! Colour management end to end: images tagged with Display P3, Adobe RGB and CMYK profiles go
//! through the very pipeline the Lambda runs, and their renditions' colours are compared with
//! Little CMS (lcms2, the engine libvips, sharp and Pillow use) converting the same colours.
//! Our pipeline uses another engine (moxcms), so agreement is a real check, not a tautology.

use std::io::Cursor;

use image_processor::imaging::{render, Settings, SRGB_PROFILE};
use image_processor::rendition::{Format, RenditionSpec};
use lcms2::{Intent, PixelFormat, Profile, Transform};
use moxcms::ColorProfile;
use shared::ObjectKey;

/// Patches of flat colour, 8 a row, each `PATCH` pixels square.
const PATCH: u32 = 48;
const COLOURS: [[u8; 3]; 8] = [
    [230, 30, 40],
    [40, 200, 60],
    [30, 60, 220],
    [128, 128, 128],
    [250, 220, 80],
    [200, 120, 90],
    [20, 20, 20],
    [245, 245, 245],
];

fn patches(channels: usize, colour: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    let (width, height) = (PATCH * 8, PATCH);
    let mut data = Vec::with_capacity((width * height) as usize * channels);
    for _ in 0..height {
        for x in 0..width {
            data.extend(colour((x / PATCH) as usize));
        }
    }
    data
}

/// Renders `bytes` to one rendition as wide as the source, in `format`.
fn rendition(bytes: &[u8], format: Format) -> (Vec<u8>, Vec<String>) {
    let plan = |displayed: (u32, u32), _alpha: bool| {
        Ok(vec![RenditionSpec {
            width_label: displayed.0,
            width: displayed.0,
            height: displayed.1,
            format,
            key: ObjectKey::new("thumbnails/x/1.jpg").unwrap(),
        }])
    };
    let rendered = render(bytes, &Settings::default(), PATCH * 8, plan).unwrap();
    let (_, bytes) = rendered.renditions.into_iter().next().unwrap();
    (bytes, rendered.warnings)
}

/// The colour at the centre of each patch of a rendition.
fn sampled(bytes: &[u8]) -> Vec<[u8; 3]> {
    let image = image::load_from_memory(bytes).unwrap().to_rgb8();
    (0..8)
        .map(|i| image.get_pixel(i * PATCH + PATCH / 2, PATCH / 2).0)
        .collect()
}

fn lcms_to_srgb(profile: &[u8], format: PixelFormat, pixels: &[u8]) -> Vec<[u8; 3]> {
    let source = Profile::new_icc(profile).unwrap();
    let srgb = Profile::new_srgb();
    let transform = Transform::new(
        &source,
        format,
        &srgb,
        PixelFormat::RGB_8,
        Intent::RelativeColorimetric,
    )
    .unwrap();
    let mut out = vec![[0u8; 3]; pixels.len() / format.bytes_per_pixel()];
    transform.transform_pixels(pixels, &mut out);
    out
}

fn assert_close(ours: &[[u8; 3]], reference: &[[u8; 3]], tolerance: u8, what: &str) {
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        let worst = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        assert!(
            worst <= tolerance,
            "{what}, patch {i}: ours {a:?}, Little CMS {b:?} (off by {worst}, at most {tolerance})"
        );
    }
}

fn jpeg_with_icc(rgb: &[u8], icc: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 95);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_4_4);
    encoder.add_icc_profile(icc).unwrap();
    encoder
        .encode(
            rgb,
            (PATCH * 8) as u16,
            PATCH as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .unwrap();
    out
}

/// A PNG with transparency (so that its rendition is a lossless PNG) and an `iCCP` chunk.
fn png_with_icc(rgba: &[u8], icc: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut info = png::Info::with_size(PATCH * 8, PATCH);
    info.color_type = png::ColorType::Rgba;
    info.bit_depth = png::BitDepth::Eight;
    info.icc_profile = Some(icc.to_vec().into());
    let mut writer = png::Encoder::with_info(Cursor::new(&mut out), info)
        .unwrap()
        .write_header()
        .unwrap();
    writer.write_image_data(rgba).unwrap();
    writer.finish().unwrap();
    out
}

fn has_srgb_tag(format: Format, bytes: &[u8]) -> bool {
    let find = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    match format {
        Format::Jpeg => find(b"ICC_PROFILE\0") && find(&SRGB_PROFILE[36..80]),
        Format::Png => find(b"sRGB"),
        _ => find(b"ICCP"),
    }
}

#[test]
fn display_p3_and_adobe_rgb_jpegs_are_converted_as_little_cms_converts_them() {
    for (name, profile) in [
        ("Display P3", ColorProfile::new_display_p3()),
        ("Adobe RGB", ColorProfile::new_adobe_rgb()),
    ] {
        let icc = profile.encode().unwrap();
        let rgb = patches(3, |i| COLOURS[i].to_vec());
        let (out, warnings) = rendition(&jpeg_with_icc(&rgb, &icc), Format::Jpeg);
        assert!(warnings.is_empty(), "{warnings:?}");
        let flat: Vec<u8> = COLOURS.concat();
        let reference = lcms_to_srgb(&icc, PixelFormat::RGB_8, &flat);
        // JPEG twice over (source at 95, rendition at 80) on flat patches.
        assert_close(&sampled(&out), &reference, 6, name);
        // Not a no-op: the profile's colours differ from the same numbers read as sRGB.
        assert!(
            reference.iter().zip(&COLOURS).any(|(a, b)| a != b),
            "{name} equals sRGB?"
        );
        assert!(
            has_srgb_tag(Format::Jpeg, &out),
            "{name}: rendition not tagged sRGB"
        );
    }
}

#[test]
fn a_tagged_png_with_alpha_is_converted_losslessly_and_tagged() {
    let icc = ColorProfile::new_display_p3().encode().unwrap();
    let rgba = patches(4, |i| [&COLOURS[i][..], &[200]].concat());
    for format in [Format::Png, Format::Webp] {
        let (out, _) = rendition(&png_with_icc(&rgba, &icc), format);
        let flat: Vec<u8> = COLOURS.concat();
        let reference = lcms_to_srgb(&icc, PixelFormat::RGB_8, &flat);
        let tolerance = if format == Format::Png { 2 } else { 8 };
        assert_close(
            &sampled(&out),
            &reference,
            tolerance,
            &format!("{format:?}"),
        );
        assert!(
            has_srgb_tag(format, &out),
            "{format:?} rendition not tagged"
        );
        if format == Format::Webp {
            // The extended WebP layout we write is one libwebp and the image crate read.
            let decoded = image::load_from_memory(&out).unwrap();
            assert_eq!(decoded.width(), PATCH * 8);
        }
    }
}

#[test]
fn an_srgb_tagged_source_is_not_converted_nor_tagged_again() {
    let rgb = patches(3, |i| COLOURS[i].to_vec());
    let (out, warnings) = rendition(&jpeg_with_icc(&rgb, SRGB_PROFILE), Format::Jpeg);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(!has_srgb_tag(Format::Jpeg, &out));
    assert_close(&sampled(&out), &COLOURS, 6, "sRGB");
}

/// A CMYK JPEG as Photoshop writes one: Adobe marker, samples inverted (255 is no ink), and the
/// profile in APP2 chunks when given (the fallback profile takes 15 of them).
fn cmyk_jpeg(ink: &[u8], icc: Option<&[u8]>) -> Vec<u8> {
    let mut compress = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_CMYK);
    compress.set_size((PATCH * 8) as usize, PATCH as usize);
    compress.set_quality(95.0);
    let mut started = compress.start_compress(Vec::new()).unwrap();
    if let Some(icc) = icc {
        // A marker holds 65,533 bytes: larger profiles are split, numbered from 1.
        let chunks: Vec<&[u8]> = icc.chunks(65_519).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut app2 = b"ICC_PROFILE\0".to_vec();
            app2.extend_from_slice(&[i as u8 + 1, chunks.len() as u8]);
            app2.extend_from_slice(chunk);
            started.write_marker(mozjpeg::Marker::APP(2), &app2);
        }
    }
    let stored: Vec<u8> = ink.iter().map(|v| 255 - v).collect();
    started.write_scanlines(&stored).unwrap();
    started.finish().unwrap()
}

const INKS: [[u8; 4]; 8] = [
    [0, 0, 0, 0],
    [255, 0, 0, 0],
    [0, 255, 0, 0],
    [0, 0, 255, 0],
    [0, 0, 0, 255],
    [40, 90, 160, 10],
    [120, 40, 40, 60],
    [10, 10, 10, 10],
];

#[test]
fn cmyk_jpegs_are_converted_through_their_profile_or_sharps_default() {
    // The profile compiled in for untagged CMYK, embedded here too: both paths must agree with
    // Little CMS converting the inks through it.
    let profile = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/cmyk.icm")).unwrap();
    let ink = patches(4, |i| INKS[i].to_vec());
    let reference = lcms_to_srgb(&profile, PixelFormat::CMYK_8, &INKS.concat());
    for icc in [None, Some(&profile[..])] {
        let (out, warnings) = rendition(&cmyk_jpeg(&ink, icc), Format::Jpeg);
        assert!(warnings.is_empty(), "{warnings:?}");
        let what = if icc.is_some() {
            "embedded CMYK profile"
        } else {
            "default CMYK profile"
        };
        assert_close(&sampled(&out), &reference, 8, what);
    }
}
