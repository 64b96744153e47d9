//! JPEG: libjpeg-turbo's decoder at a reduced DCT scale.

use std::ffi::CStr;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::metadata::Orientation;
use mozjpeg::{ColorSpace, Decompress, Marker};

use super::{check_pixels, swaps_axes, Header, Pixels};
use crate::error::Error;
use crate::rendition::fit;

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

pub(super) fn decode_jpeg(
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
        icc: None,
        warnings: Vec::new(),
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
