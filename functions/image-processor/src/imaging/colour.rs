//! Colour management: every rendition is sRGB. Embedded ICC profiles (RGB matrix-shaper or LUT,
//! CMYK) are converted through `moxcms`, a colour-management engine in Rust that reads ICC v2 and
//! v4; a CMYK JPEG without a profile goes through the CMYK profile sharp falls back to. Images
//! whose profile is sRGB, or that have none, are left as they are: untagged means sRGB on the web.
//!
//! RGB sources are converted after resizing (a few hundred thousand pixels, not the source's
//! millions: resizing in the source's space and converting after differs from the other order by
//! less than the encoders' rounding); CMYK right after decoding, since renditions are RGB.

use std::sync::{Arc, OnceLock};

use moxcms::{ColorProfile, DataColorSpace, Layout, RenderingIntent, TransformOptions};

use crate::error::Error;

/// A compact ICC v4 sRGB profile (480 bytes, CC0), embedded in renditions that were converted.
pub const SRGB_PROFILE: &[u8] = include_bytes!("../../profiles/srgb.icm");
/// ArgyllCMS' public-domain "Chemical proof" CMYK profile: sharp's fallback for untagged CMYK.
const DEFAULT_CMYK_PROFILE: &[u8] = include_bytes!("../../profiles/cmyk.icm");

/// An 8-bit transform to sRGB, shared by the renditions of one image.
pub type Transform = Arc<moxcms::Transform8BitExecutor>;

fn srgb() -> &'static ColorProfile {
    static SRGB: OnceLock<ColorProfile> = OnceLock::new();
    SRGB.get_or_init(ColorProfile::new_srgb)
}

fn options() -> TransformOptions {
    // Relative colorimetric, libvips' default intent (matrix-shaper profiles, nearly every RGB
    // one, have nothing else; for CMYK it is the press's own colours on white paper).
    TransformOptions {
        rendering_intent: RenderingIntent::RelativeColorimetric,
        ..TransformOptions::default()
    }
}

/// The transform from an RGB image's embedded profile to sRGB, or `None` when there is nothing to
/// convert: no profile, an sRGB one, or one that is not RGB (a grey profile on greyscale pixels
/// is taken as sRGB's tone curve). A profile that cannot be read is a warning, not a refusal:
/// browsers show such images as untagged.
pub fn rgb_to_srgb(
    icc: Option<&[u8]>,
    alpha: bool,
    warnings: &mut Vec<String>,
) -> Option<Transform> {
    let profile = parse(icc?, warnings)?;
    if profile.color_space != DataColorSpace::Rgb {
        if profile.color_space != DataColorSpace::Gray {
            warnings.push(format!(
                "ICC profile of colour space {:?} on RGB pixels ignored",
                profile.color_space
            ));
        }
        return None;
    }
    let layout = if alpha { Layout::Rgba } else { Layout::Rgb };
    let transform = match profile.create_transform_8bit(layout, srgb(), layout, options()) {
        Ok(transform) => transform,
        Err(err) => {
            warnings.push(format!("ICC profile ignored: {err}"));
            return None;
        }
    };
    (!is_identity(&transform, alpha)).then_some(transform)
}

/// Whether a transform changes no colour by more than a level: the profile is sRGB under another
/// name (cameras and editors embed many variants), and converting would only cost time.
fn is_identity(transform: &Transform, alpha: bool) -> bool {
    let channels = if alpha { 4 } else { 3 };
    let steps = [0u8, 16, 48, 96, 128, 160, 208, 240, 255];
    let mut samples = Vec::with_capacity(steps.len().pow(3) * channels);
    for &r in &steps {
        for &g in &steps {
            for &b in &steps {
                samples.extend_from_slice(&[r, g, b]);
                if alpha {
                    samples.push(255);
                }
            }
        }
    }
    let mut out = vec![0; samples.len()];
    if transform.transform(&samples, &mut out).is_err() {
        return false;
    }
    samples.iter().zip(&out).all(|(a, b)| a.abs_diff(*b) <= 1)
}

/// Converts RGB or RGBA pixels in place (alpha kept).
pub fn apply(transform: &Transform, pixels: &mut [u8]) -> Result<(), Error> {
    let source = pixels.to_vec();
    transform
        .transform(&source, pixels)
        .map_err(|e| Error::Encode(format!("colour conversion: {e}")))
}

/// CMYK samples as libjpeg returns them to sRGB RGB, through the embedded CMYK profile or, when
/// there is none (or it cannot be used), the default one. Adobe's writers (Photoshop) store CMYK
/// inverted, 255 meaning no ink; ICC profiles count ink up from 0.
pub fn cmyk_to_srgb(
    cmyk: &[u8],
    icc: Option<&[u8]>,
    adobe_inverted: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<u8>, Error> {
    let embedded = icc.and_then(|icc| parse(icc, warnings)).filter(|profile| {
        let cmyk = profile.color_space == DataColorSpace::Cmyk;
        if !cmyk {
            warnings.push(format!(
                "ICC profile of colour space {:?} on CMYK pixels ignored",
                profile.color_space
            ));
        }
        cmyk
    });
    let transform = match embedded.map(|profile| cmyk_transform(&profile)) {
        Some(Ok(transform)) => transform,
        Some(Err(err)) => {
            warnings.push(format!("CMYK ICC profile ignored: {err}"));
            default_cmyk()?
        }
        None => default_cmyk()?,
    };
    let mut ink = cmyk.to_vec();
    if adobe_inverted {
        for sample in &mut ink {
            *sample = 255 - *sample;
        }
    }
    let mut rgb = vec![0; cmyk.len() / 4 * 3];
    transform
        .transform(&ink, &mut rgb)
        .map_err(|e| Error::Corrupt(format!("CMYK conversion: {e}")))?;
    Ok(rgb)
}

fn cmyk_transform(profile: &ColorProfile) -> Result<Transform, moxcms::CmsError> {
    profile.create_transform_8bit(Layout::Rgba, srgb(), Layout::Rgb, options())
}

/// The fallback CMYK transform, built once per process (its LUTs take a few milliseconds).
fn default_cmyk() -> Result<Transform, Error> {
    static DEFAULT: OnceLock<Result<Transform, String>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            ColorProfile::new_from_slice(DEFAULT_CMYK_PROFILE)
                .and_then(|profile| cmyk_transform(&profile))
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| Error::Unsupported(format!("the default CMYK profile: {e}")))
}

fn parse(icc: &[u8], warnings: &mut Vec<String>) -> Option<ColorProfile> {
    match ColorProfile::new_from_slice(icc) {
        Ok(profile) => Some(profile),
        Err(err) => {
            warnings.push(format!(
                "ICC profile of {} bytes unreadable: {err}",
                icc.len()
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(profile: ColorProfile) -> Vec<u8> {
        profile.encode().unwrap()
    }

    #[test]
    fn srgb_and_missing_profiles_convert_nothing() {
        let mut warnings = Vec::new();
        assert!(rgb_to_srgb(None, false, &mut warnings).is_none());
        assert!(rgb_to_srgb(Some(SRGB_PROFILE), false, &mut warnings).is_none());
        assert!(rgb_to_srgb(
            Some(&encoded(ColorProfile::new_srgb())),
            true,
            &mut warnings
        )
        .is_none());
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn display_p3_red_is_clipped_into_srgb() {
        let mut warnings = Vec::new();
        let p3 = encoded(ColorProfile::new_display_p3());
        let transform = rgb_to_srgb(Some(&p3), false, &mut warnings).expect("a conversion");
        let mut pixels = vec![255, 0, 0, 128, 128, 128];
        apply(&transform, &mut pixels).unwrap();
        // P3's red lies outside sRGB: it becomes sRGB's red; grey stays grey.
        assert!(
            pixels[0] >= 250 && pixels[1] <= 10 && pixels[2] <= 10,
            "{pixels:?}"
        );
        assert!(
            pixels[3..].iter().all(|v| v.abs_diff(128) <= 1),
            "{pixels:?}"
        );
        // A duller P3 red is a more saturated sRGB red.
        let mut dull = vec![200, 60, 60];
        apply(&transform, &mut dull).unwrap();
        assert!(dull[0] > 200 && dull[1] < 60, "{dull:?}");
    }

    #[test]
    fn unreadable_profiles_are_warnings() {
        let mut warnings = Vec::new();
        assert!(rgb_to_srgb(Some(b"not a profile"), false, &mut warnings).is_none());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn untagged_cmyk_goes_through_the_default_profile() {
        let mut warnings = Vec::new();
        // Paper white, full black, and cyan ink, as non-Adobe (0 = no ink) samples.
        let cmyk = [0, 0, 0, 0, 255, 255, 255, 255, 255, 0, 0, 0];
        let rgb = cmyk_to_srgb(&cmyk, None, false, &mut warnings).unwrap();
        assert!(rgb[0..3].iter().all(|&v| v >= 235), "paper {rgb:?}");
        // Every ink at full: the press's darkest black, a dark grey on screen.
        assert!(rgb[3..6].iter().all(|&v| v <= 50), "black {rgb:?}");
        let (r, g, b) = (rgb[6], rgb[7], rgb[8]);
        assert!(r < 60 && g > 120 && b > 180, "cyan {rgb:?}");
        // The same colours stored inverted, as Photoshop writes them.
        let inverted: Vec<u8> = cmyk.iter().map(|v| 255 - v).collect();
        assert_eq!(
            cmyk_to_srgb(&inverted, None, true, &mut warnings).unwrap(),
            rgb
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
