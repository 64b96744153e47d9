//! JPEG: libjpeg-turbo's decoder at a reduced DCT scale, lenient where the pixels are there.

use std::cell::RefCell;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::metadata::Orientation;
use mozjpeg::{ColorSpace, Decompress, Marker};
use mozjpeg_sys::{jpeg_common_struct, jpeg_error_mgr};

use super::{check_pixels, metadata, progressive, swaps_axes, Header, Pixels, SourceFormat};
use crate::error::Error;
use crate::rendition::fit;

/// Scans a progressive JPEG may have: each one is a pass over the whole image, so a file of
/// thousands of tiny scans costs minutes of CPU for a few kilobytes (libjpeg-turbo's advice).
const MAX_SCANS: u32 = 1_000;
/// Distinct warnings kept (each with its count); libjpeg repeats itself on a damaged file.
const MAX_WARNINGS: usize = 16;
/// libjpeg's `JMSG_LENGTH_MAX`: what `format_message` may write (with snprintf), NUL included.
const MESSAGE_LENGTH: usize = 200;

/// Warnings after which the pixels are not there: the file ends early, or the entropy-coded
/// data is damaged (libjpeg fills the rest with grey or garbage). Arithmetic coding is not built in. These stay refusals, as in
/// sharp's default `failOn`: otherwise a truncated upload becomes grey thumbnails.
const PIXELS_MISSING: [(c_int, &str); 4] = [
    (
        mozjpeg_sys::JWRN_JPEG_EOF,
        "the file ends before its last pixels (a truncated upload?)",
    ),
    (
        mozjpeg_sys::JWRN_HIT_MARKER,
        "a scan's data stops short: the pixels after it are missing",
    ),
    (
        mozjpeg_sys::JWRN_HUFF_BAD_CODE,
        "the entropy-coded data is damaged: the pixels after it would be garbage",
    ),
    (
        mozjpeg_sys::JWRN_MUST_RESYNC,
        "a restart marker is missing: the pixels after it would be garbage",
    ),
];

/// What libjpeg reported about the image this thread is decoding: its error manager has no room
/// for a pointer of ours, and one decode runs on one thread from start to end.
#[derive(Default)]
struct Report {
    /// (message code, first text, times seen)
    warnings: Vec<(c_int, String, u32)>,
    scans: u32,
}

thread_local! {
    static REPORT: RefCell<Report> = RefCell::default();
}

/// libjpeg reports errors by calling `error_exit` (the mozjpeg crate unwinds from there), and
/// warnings and traces through `emit_message`. Recoverable warnings (junk before a marker, a
/// bad APPn or Photoshop segment, an unknown JFIF revision, an odd progression) are collected and
/// decoding goes on, as browsers and Pillow do; those that mean missing pixels refuse the image.
fn error_mgr() -> jpeg_error_mgr {
    // SAFETY: jpeg_std_error fills in a zeroed manager completely.
    let mut err: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { mozjpeg_sys::jpeg_std_error(&mut err) };
    err.error_exit = Some(jpeg_fail);
    err.emit_message = Some(jpeg_message);
    err
}

fn refuse(err: Error) -> ! {
    std::panic::resume_unwind(Box::new(err))
}

extern "C-unwind" fn jpeg_fail(cinfo: &mut jpeg_common_struct) {
    refuse(Error::Corrupt(format!("JPEG: {}", message_text(cinfo))));
}

extern "C-unwind" fn jpeg_message(cinfo: &mut jpeg_common_struct, level: c_int) {
    // SAFETY: `err` points at the manager built by `error_mgr`, alive while libjpeg runs.
    let code = unsafe { (*cinfo.err).msg_code };
    if level < 0 {
        if let Some((_, what)) = PIXELS_MISSING.iter().find(|(c, _)| *c == code) {
            refuse(Error::Corrupt(format!(
                "JPEG: {}: {what}",
                message_text(cinfo)
            )));
        }
        let text = message_text(cinfo);
        REPORT.with_borrow_mut(|report| {
            let full = report.warnings.len() >= MAX_WARNINGS;
            match report.warnings.iter_mut().find(|(c, ..)| *c == code) {
                Some((.., count)) => *count += 1,
                None if !full => report.warnings.push((code, text, 1)),
                None => {}
            }
        });
    } else if code == mozjpeg_sys::JTRC_SOS {
        // Traced for every Start Of Scan marker libjpeg reads, before the scan is decoded.
        let scans = REPORT.with_borrow_mut(|report| {
            report.scans += 1;
            report.scans
        });
        if scans > MAX_SCANS {
            refuse(Error::TooManyScans { limit: MAX_SCANS });
        }
    }
}

/// libjpeg's message for its last error or warning, printf arguments formatted by libjpeg.
fn message_text(cinfo: &mut jpeg_common_struct) -> String {
    let mut buffer = [0u8; MESSAGE_LENGTH];
    // SAFETY: `err` is the manager `jpeg_std_error` filled in; its `format_message` writes at
    // most JMSG_LENGTH_MAX bytes, NUL included, with snprintf (jerror.c). The binding declares
    // the buffer as `&[u8; 80]`: it is called through a pointer type that says what C does.
    unsafe {
        type Format = unsafe extern "C-unwind" fn(*mut jpeg_common_struct, *mut c_char);
        if let Some(format) = (*cinfo.err).format_message {
            let format: Format = std::mem::transmute(format);
            format(cinfo, buffer.as_mut_ptr().cast());
        }
    }
    match CStr::from_bytes_until_nul(&buffer) {
        Ok(text) if !text.is_empty() => text.to_string_lossy().into_owned(),
        // SAFETY: as above.
        _ => format!("libjpeg message {}", unsafe { (*cinfo.err).msg_code }),
    }
}

/// The warnings collected, each with how often it came.
fn take_warnings() -> Vec<String> {
    let report = REPORT.take();
    report
        .warnings
        .into_iter()
        .map(|(_, text, count)| match count {
            1 => text,
            n => format!("{text} ({n} times)"),
        })
        .collect()
}

pub(super) fn decode_jpeg(
    bytes: &[u8],
    max_pixels: u64,
    largest_width: u32,
) -> Result<(Header, Pixels), Error> {
    REPORT.take();
    let result = catch_unwind(AssertUnwindSafe(|| {
        decode_jpeg_unguarded(bytes, max_pixels, largest_width)
    }));
    let warnings = take_warnings();
    match result {
        Ok(Ok((mut header, pixels))) => {
            header.warnings.splice(0..0, warnings);
            Ok((header, pixels))
        }
        Ok(Err(err)) => Err(err),
        Err(payload) => Err(match payload.downcast::<Error>() {
            Ok(err) => *err,
            Err(_) => Error::Corrupt("JPEG decoder failed".to_owned()),
        }),
    }
}

fn decode_jpeg_unguarded(
    bytes: &[u8],
    max_pixels: u64,
    largest_width: u32,
) -> Result<(Header, Pixels), Error> {
    let io = |e: std::io::Error| Error::Corrupt(format!("JPEG: {e}"));
    // Declared first: a decompressor reading it must not outlive it.
    let shortened: Vec<u8>;
    let mut decompress = Decompress::builder()
        .with_err(error_mgr())
        .with_markers(&[Marker::APP(14)])
        .from_mem(bytes)
        .map_err(io)?;
    let (width, height) = decompress.size();
    let (width, height) = (width as u32, height as u32);
    check_pixels(width, height, max_pixels)?;
    let metadata = metadata::read(bytes, SourceFormat::Jpeg);
    let mut adobe = false;
    for marker in decompress.markers() {
        if marker.marker == Marker::APP(14) {
            adobe |= marker.data.starts_with(b"Adobe");
        }
    }
    let header = Header {
        width,
        height,
        orientation: metadata.orientation.unwrap_or(Orientation::NoTransforms),
        icc: metadata.icc,
        warnings: metadata.warnings,
    };
    let (target_width, target_height) = stored_target(&header, largest_width);
    let scale = dct_scale(width, height, target_width, target_height);
    // A progressive file shrunk to half size or less: its last refinement scans are left out
    // (see progressive.rs), and libjpeg reads what comes before them as the whole file.
    if let Some(end) = progressive::cut_before_last_bits(bytes, scale) {
        shortened = [&bytes[..end], &[0xFF, 0xD9][..]].concat();
        decompress = Decompress::builder()
            .with_err(error_mgr())
            .with_markers(&[Marker::APP(14)])
            .from_mem(&shortened)
            .map_err(io)?;
    }
    decompress.scale(scale);
    // No block smoothing: libjpeg would estimate the coefficients a shortened progressive file
    // lacks from their neighbours, which costs a tenth more time and scores no better.
    decompress.do_block_smoothing(false);
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
    let data: Vec<u8> = started.read_scanlines().map_err(io)?;
    started.finish().map_err(io)?;
    Ok((
        header,
        Pixels {
            width: out_width,
            height: out_height,
            alpha: false,
            ycbcr,
            cmyk: cmyk.then_some(adobe),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(progressive: bool) -> Vec<u8> {
        let (width, height) = (64u16, 48u16);
        let rgb: Vec<u8> = (0..u32::from(width) * u32::from(height))
            .flat_map(|i| [(i % 251) as u8, (i / 7 % 256) as u8, 90])
            .collect();
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
        encoder.set_progressive(progressive);
        encoder
            .encode(&rgb, width, height, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        out
    }

    fn decode(bytes: &[u8]) -> Result<(Header, Pixels), Error> {
        decode_jpeg(bytes, 1_000_000, 1280)
    }

    fn refusal(bytes: &[u8]) -> Error {
        match decode(bytes) {
            Ok(_) => panic!("decoded"),
            Err(err) => err,
        }
    }

    /// Where the last scan's SOS marker starts.
    fn last_sos(bytes: &[u8]) -> usize {
        bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap()
    }

    #[test]
    fn the_message_codes_used_are_libjpegs() {
        // SAFETY: jpeg_std_error fills in a zeroed manager completely.
        let mut err: jpeg_error_mgr = unsafe { std::mem::zeroed() };
        unsafe { mozjpeg_sys::jpeg_std_error(&mut err) };
        let text = |code: c_int| {
            assert!(code <= err.last_jpeg_message);
            // SAFETY: the table has `last_jpeg_message + 1` entries.
            unsafe { CStr::from_ptr((*err.jpeg_message_table.offset(code as isize)).cast()) }
                .to_str()
                .unwrap()
        };
        assert_eq!(text(mozjpeg_sys::JTRC_SOS), "Start Of Scan: %d components");
        assert_eq!(
            text(mozjpeg_sys::JWRN_JPEG_EOF),
            "Premature end of JPEG file"
        );
        assert_eq!(
            text(mozjpeg_sys::JWRN_HIT_MARKER),
            "Corrupt JPEG data: premature end of data segment"
        );
        assert_eq!(
            text(mozjpeg_sys::JWRN_HUFF_BAD_CODE),
            "Corrupt JPEG data: bad Huffman code"
        );
        assert!(text(mozjpeg_sys::JWRN_MUST_RESYNC).starts_with("Corrupt JPEG data: found marker"));
    }

    #[test]
    fn junk_before_a_marker_is_a_warning_with_its_arguments() {
        let clean = jpeg(false);
        let at = last_sos(&clean);
        let bytes = [&clean[..at], b"\x00junk", &clean[at..]].concat();
        let (header, pixels) = decode(&bytes).unwrap();
        assert_eq!((pixels.width, pixels.height), (64, 48));
        assert_eq!(
            header.warnings,
            ["Corrupt JPEG data: 5 extraneous bytes before marker 0xda"]
        );
        // Twice: one warning, counted.
        let at = clean.windows(2).position(|w| w == [0xFF, 0xC4]).unwrap();
        let bytes = [&bytes[..at], b"xy", &bytes[at..]].concat();
        let (header, _) = decode(&bytes).unwrap();
        assert_eq!(
            header.warnings,
            ["Corrupt JPEG data: 2 extraneous bytes before marker 0xc4 (2 times)"]
        );
        // Nothing left over for the next image on this thread.
        assert!(decode(&clean).unwrap().0.warnings.is_empty());
    }

    #[test]
    fn missing_pixels_are_refused_and_say_so() {
        let clean = jpeg(false);
        let err = refusal(&clean[..clean.len() * 2 / 3]);
        assert!(
            err.to_string()
                .contains("Premature end of JPEG file: the file ends"),
            "{err}"
        );
        assert!(matches!(err, Error::Corrupt(_)));
    }

    #[test]
    fn a_progressive_jpeg_of_too_many_scans_is_refused() {
        let clean = jpeg(true);
        let at = last_sos(&clean);
        let scan = &clean[at..clean.len() - 2];
        let mut bytes = clean[..clean.len() - 2].to_vec();
        for _ in 0..MAX_SCANS {
            bytes.extend_from_slice(scan);
        }
        bytes.extend_from_slice(&[0xFF, 0xD9]);
        let started = std::time::Instant::now();
        let err = refusal(&bytes);
        assert!(
            matches!(err, Error::TooManyScans { limit: MAX_SCANS }),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        // The same scan repeated up to the limit decodes (libjpeg warns of the progression).
        let mut bytes = clean[..clean.len() - 2].to_vec();
        bytes.extend_from_slice(scan);
        bytes.extend_from_slice(&[0xFF, 0xD9]);
        let (header, _) = decode(&bytes).unwrap();
        assert!(
            header
                .warnings
                .iter()
                .all(|w| w.starts_with("Inconsistent progression")),
            "{:?}",
            header.warnings
        );
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
}
