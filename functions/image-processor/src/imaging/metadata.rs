//! What a container says beside its pixels: the orientation (EXIF's first, else XMP's
//! `tiff:Orientation`) and the embedded ICC profile, from JPEG segments, PNG chunks and WebP RIFF
//! chunks; and the extent of a GIF's frames. Bounded: every length is checked against the bytes
//! there, a JPEG is read up to its first scan only, compressed chunks inflate to a limit, and
//! nothing is copied but the ICC profile and what had to be inflated.

use std::borrow::Cow;

use image::metadata::Orientation;

use super::SourceFormat;

/// Largest ICC profile kept (a CMYK press profile is 0.5-3 MB); a larger one is ignored.
pub(super) const MAX_ICC_BYTES: usize = 4 << 20;
/// Largest XMP packet inflated from a compressed PNG `iTXt` chunk.
const MAX_XMP_BYTES: usize = 4 << 20;

#[derive(Debug, Default)]
pub(super) struct Metadata {
    pub(super) orientation: Option<Orientation>,
    pub(super) icc: Option<Vec<u8>>,
    /// Metadata that was there but could not be used (the image renders without it).
    pub(super) warnings: Vec<String>,
}

/// What the container holds, as found (EXIF as its TIFF structure).
#[derive(Default)]
struct Found<'a> {
    exif: Option<&'a [u8]>,
    xmp: Option<Cow<'a, [u8]>>,
    icc: Option<Vec<u8>>,
    warnings: Vec<String>,
}

pub(super) fn read(bytes: &[u8], format: SourceFormat) -> Metadata {
    let found = match format {
        SourceFormat::Jpeg => jpeg(bytes),
        SourceFormat::Png => png(bytes),
        SourceFormat::Webp => webp(bytes),
        SourceFormat::Gif => Found::default(),
    };
    let orientation = found
        .exif
        .and_then(Orientation::from_exif_chunk)
        .or_else(|| found.xmp.as_deref().and_then(xmp_orientation));
    Metadata {
        orientation,
        icc: found.icc,
        warnings: found.warnings,
    }
}

/// EXIF as some writers store it in PNG and WebP too: behind JPEG's `Exif\0\0` prefix.
fn tiff(exif: &[u8]) -> &[u8] {
    exif.strip_prefix(b"Exif\0\0").unwrap_or(exif)
}

fn be16(bytes: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes(
        bytes.get(at..at + 2)?.try_into().ok()?,
    )))
}

fn be32(bytes: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?)).ok()
}

fn le32(bytes: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?)).ok()
}

fn le16(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes(
        bytes.get(at..at + 2)?.try_into().ok()?,
    )))
}

const XMP_JPEG: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const ICC_JPEG: &[u8] = b"ICC_PROFILE\0";

/// The segments before the first scan, read as libjpeg reads them: bytes that are not a marker
/// (junk, a stray `FF00`) are skipped up to the next one, fill bytes (`FF FF`) too.
fn jpeg(bytes: &[u8]) -> Found<'_> {
    let mut found = Found::default();
    // (sequence number, chunk count, data) of each APP2 ICC chunk, in file order.
    let mut icc_chunks: Vec<(u8, u8, &[u8])> = Vec::new();
    let mut at = 2;
    loop {
        while at < bytes.len() && bytes[at] != 0xFF {
            at += 1;
        }
        while at < bytes.len() && bytes[at] == 0xFF {
            at += 1;
        }
        let Some(&marker) = bytes.get(at) else { break };
        at += 1;
        match marker {
            // A stuffed zero, TEM, RSTn, SOI: no segment follows.
            0x00 | 0x01 | 0xD0..=0xD8 => continue,
            // SOS, EOI: metadata comes before the first scan.
            0xDA | 0xD9 => break,
            _ => {}
        }
        let Some(length) = be16(bytes, at).filter(|length| *length >= 2) else {
            break;
        };
        let Some(payload) = bytes.get(at + 2..at + length) else {
            break;
        };
        at += length;
        match marker {
            0xE1 => {
                if let Some(exif) = payload.strip_prefix(b"Exif\0") {
                    // The sixth byte is a pad, zero by the standard, not always in practice.
                    if found.exif.is_none() && !exif.is_empty() {
                        found.exif = Some(&exif[1..]);
                    }
                } else if let Some(xmp) = payload.strip_prefix(XMP_JPEG) {
                    found.xmp.get_or_insert(Cow::Borrowed(xmp));
                }
            }
            0xE2 => {
                if let Some([sequence, count, data @ ..]) = payload.strip_prefix(ICC_JPEG) {
                    icc_chunks.push((*sequence, *count, data));
                }
            }
            _ => {}
        }
    }
    if !icc_chunks.is_empty() {
        match jpeg_icc(icc_chunks) {
            Ok(icc) => found.icc = Some(icc),
            Err(why) => found.warnings.push(format!("ICC profile ignored: {why}")),
        }
    }
    found
}

/// The APP2 chunks in sequence order, refused unless each of `1..=count` is there, once.
fn jpeg_icc(mut chunks: Vec<(u8, u8, &[u8])>) -> Result<Vec<u8>, String> {
    let count = chunks[0].1;
    if chunks.iter().any(|(_, c, _)| *c != count) {
        return Err("its APP2 chunks disagree on their count".into());
    }
    chunks.sort_by_key(|(sequence, ..)| *sequence);
    // The same chunk written twice (before and after SOF, say) is one chunk.
    chunks.dedup();
    if chunks.len() != usize::from(count) {
        return Err(format!(
            "{} different APP2 chunks where they say {count}",
            chunks.len()
        ));
    }
    if chunks
        .iter()
        .enumerate()
        .any(|(i, (sequence, ..))| usize::from(*sequence) != i + 1)
    {
        return Err("its APP2 chunks are not numbered 1 to their count".into());
    }
    let total: usize = chunks.iter().map(|(.., data)| data.len()).sum();
    if total > MAX_ICC_BYTES {
        return Err(format!("{total} bytes, over {MAX_ICC_BYTES}"));
    }
    let mut icc = Vec::with_capacity(total);
    for (.., data) in &chunks {
        icc.extend_from_slice(data);
    }
    Ok(icc)
}

const XMP_PNG_KEYWORD: &[u8] = b"XML:com.adobe.xmp";

/// Every chunk's header (the pixel data is stepped over, not read): the first `eXIf`, `iCCP`
/// and XMP `iTXt` count.
fn png(bytes: &[u8]) -> Found<'_> {
    let mut found = Found::default();
    let mut at = 8;
    while let (Some(length), Some(kind)) = (be32(bytes, at), bytes.get(at + 4..at + 8)) {
        let Some(data) = at
            .checked_add(8 + length)
            .and_then(|end| bytes.get(at + 8..end))
        else {
            break;
        };
        at += 12 + length;
        match kind {
            b"IEND" => break,
            b"eXIf" if found.exif.is_none() => found.exif = Some(tiff(data)),
            b"iCCP" if found.icc.is_none() => match png_iccp(data) {
                Ok(icc) => found.icc = Some(icc),
                Err(why) => found.warnings.push(format!("ICC profile ignored: {why}")),
            },
            b"iTXt" if found.xmp.is_none() => match png_xmp(data) {
                Ok(xmp) => found.xmp = xmp,
                Err(why) => found.warnings.push(format!("XMP ignored: {why}")),
            },
            _ => {}
        }
    }
    found
}

/// Profile name (1-79 bytes), NUL, compression method 0, then the zlib stream.
fn png_iccp(data: &[u8]) -> Result<Vec<u8>, String> {
    let name_end = data
        .iter()
        .take(80)
        .position(|b| *b == 0)
        .ok_or("iCCP chunk has no profile name")?;
    match data.get(name_end + 1..) {
        Some([0, stream @ ..]) => inflate(stream, MAX_ICC_BYTES),
        _ => Err("iCCP chunk has an unknown compression method".into()),
    }
}

/// Keyword, NUL, compression flag and method, language tag, NUL, translated keyword, NUL, text.
/// `None` for another keyword than XMP's.
fn png_xmp(data: &[u8]) -> Result<Option<Cow<'_, [u8]>>, String> {
    let Some(rest) = data
        .strip_prefix(XMP_PNG_KEYWORD)
        .and_then(|rest| rest.strip_prefix(b"\0"))
    else {
        return Ok(None);
    };
    let [compressed, method, rest @ ..] = rest else {
        return Err("iTXt chunk ends in its header".into());
    };
    let mut fields = rest.splitn(3, |b| *b == 0);
    let (Some(_language), Some(_translated), Some(text)) =
        (fields.next(), fields.next(), fields.next())
    else {
        return Err("iTXt chunk ends in its header".into());
    };
    match (compressed, method) {
        (0, _) => Ok(Some(Cow::Borrowed(text))),
        (1, 0) => inflate(text, MAX_XMP_BYTES).map(|xmp| Some(Cow::Owned(xmp))),
        _ => Err("iTXt chunk has an unknown compression method".into()),
    }
}

fn inflate(stream: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(stream, limit).map_err(|e| {
        match e.status {
            miniz_oxide::inflate::TINFLStatus::HasMoreOutput => {
                format!("inflates to more than {limit} bytes")
            }
            status => format!("its zlib stream does not inflate ({status:?})"),
        }
    })
}

/// The VP8X feature flags that announce metadata chunks.
const WEBP_ICC: u8 = 0x20;
const WEBP_EXIF: u8 = 0x08;
const WEBP_XMP: u8 = 0x04;

/// An extended file's (VP8X) chunks, each taken only when its VP8X flag announces it, as
/// browsers do (libwebp's demuxer); a simple file (VP8, VP8L) has no metadata.
fn webp(bytes: &[u8]) -> Found<'_> {
    let mut found = Found::default();
    let riff_end = le32(bytes, 4)
        .and_then(|size| size.checked_add(8))
        .map_or(bytes.len(), |end| end.min(bytes.len()));
    let bytes = &bytes[..riff_end];
    let mut flags = None;
    let mut at = 12;
    while let (Some(kind), Some(length)) = (bytes.get(at..at + 4), le32(bytes, at + 4)) {
        let Some(data) = at
            .checked_add(8 + length)
            .and_then(|end| bytes.get(at + 8..end))
        else {
            break;
        };
        // Chunks are padded to an even length.
        at += 8 + length + (length & 1);
        let Some(flags) = flags else {
            match (kind, data.first()) {
                (b"VP8X", Some(first)) => flags = Some(*first),
                _ => break,
            }
            continue;
        };
        match kind {
            b"ICCP" if flags & WEBP_ICC != 0 && found.icc.is_none() => {
                if data.len() > MAX_ICC_BYTES {
                    found.warnings.push(format!(
                        "ICC profile ignored: {} bytes, over {MAX_ICC_BYTES}",
                        data.len()
                    ));
                } else {
                    found.icc = Some(data.to_vec());
                }
            }
            b"EXIF" if flags & WEBP_EXIF != 0 && found.exif.is_none() => {
                found.exif = Some(tiff(data));
            }
            b"XMP " if flags & WEBP_XMP != 0 && found.xmp.is_none() => {
                found.xmp = Some(Cow::Borrowed(data));
            }
            _ => {}
        }
    }
    found
}

/// `tiff:Orientation` in an XMP packet, as an attribute (`tiff:Orientation="6"`) or an element
/// (`<tiff:Orientation>6</tiff:Orientation>`).
fn xmp_orientation(xmp: &[u8]) -> Option<Orientation> {
    const NAME: &[u8] = b"tiff:Orientation";
    let mut rest = xmp;
    while let Some(found) = rest.windows(NAME.len()).position(|w| w == NAME) {
        rest = &rest[found + NAME.len()..];
        let value = match rest {
            [b'=', quote @ (b'"' | b'\''), value @ ..] => value
                .iter()
                .position(|b| b == quote)
                .map(|end| &value[..end]),
            [b'>', value @ ..] => value
                .iter()
                .position(|b| *b == b'<')
                .map(|end| &value[..end]),
            _ => None,
        };
        if let Some(orientation) = value
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(|value| value.trim().parse::<u8>().ok())
            .and_then(Orientation::from_exif)
        {
            return Some(orientation);
        }
    }
    None
}

/// The smallest canvas that holds a GIF's logical screen and every frame: what a decoder may
/// have to allocate, whatever the screen says. `None` if the header is cut short.
pub(super) fn gif_extent(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut extent = (le16(bytes, 6)?, le16(bytes, 8)?);
    let mut at = 13 + colour_table(*bytes.get(10)?);
    // Frames up to the trailer or the end of what is there.
    while let Some(next) = gif_block(bytes, at, &mut extent) {
        at = next;
    }
    Some(extent)
}

/// Steps over the block at `at`, widening `extent` to a frame's; `None` at the end.
fn gif_block(bytes: &[u8], at: usize, extent: &mut (u32, u32)) -> Option<usize> {
    match bytes.get(at)? {
        0x21 => skip_sub_blocks(bytes, at + 2),
        0x2C => {
            let (left, top) = (le16(bytes, at + 1)?, le16(bytes, at + 3)?);
            let (width, height) = (le16(bytes, at + 5)?, le16(bytes, at + 7)?);
            extent.0 = extent.0.max(left + width);
            extent.1 = extent.1.max(top + height);
            // Descriptor, local colour table, LZW code size, then the data's sub-blocks.
            skip_sub_blocks(bytes, at + 11 + colour_table(*bytes.get(at + 9)?))
        }
        _ => None,
    }
}

fn colour_table(packed: u8) -> usize {
    if packed & 0x80 != 0 {
        3 << ((packed & 0x07) + 1)
    } else {
        0
    }
}

/// Past a chain of sub-blocks (a length byte, then that many bytes; zero ends the chain).
fn skip_sub_blocks(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let length = usize::from(*bytes.get(at)?);
        at += 1 + length;
        if length == 0 {
            return Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TIFF structure with one IFD0 entry: Orientation (0x0112, SHORT), big-endian.
    fn exif(orientation: u8) -> Vec<u8> {
        let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01".to_vec();
        tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0, orientation, 0, 0]);
        tiff.extend_from_slice(&[0, 0, 0, 0]);
        tiff
    }

    fn xmp_attribute(orientation: u8) -> Vec<u8> {
        format!(
            "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF><rdf:Description \
             tiff:Orientation=\"{orientation}\"/></rdf:RDF></x:xmpmeta>"
        )
        .into_bytes()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        miniz_oxide::deflate::compress_to_vec_zlib(data, 6)
    }

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0xFF, marker];
        out.extend_from_slice(&(payload.len() as u16 + 2).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn icc_segment(sequence: u8, count: u8, data: &[u8]) -> Vec<u8> {
        segment(0xE2, &[ICC_JPEG, &[sequence, count], data].concat())
    }

    fn jpeg_with(segments: &[Vec<u8>]) -> Vec<u8> {
        [
            &[0xFF, 0xD8][..],
            &segments.concat(),
            &[0xFF, 0xDA, 0, 2, 0xFF, 0xD9],
        ]
        .concat()
    }

    fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&[0; 4]);
        out
    }

    fn png_with(chunks: &[Vec<u8>]) -> Vec<u8> {
        let ihdr = png_chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]);
        [
            &b"\x89PNG\r\n\x1a\n"[..],
            &ihdr,
            &chunks.concat(),
            &png_chunk(b"IEND", &[]),
        ]
        .concat()
    }

    fn webp_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_vec();
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(0);
        }
        out
    }

    fn webp_with(flags: u8, chunks: &[Vec<u8>]) -> Vec<u8> {
        let vp8x = webp_chunk(b"VP8X", &[flags, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let body = [&b"WEBP"[..], &vp8x, &chunks.concat()].concat();
        [&b"RIFF"[..], &(body.len() as u32).to_le_bytes(), &body].concat()
    }

    #[test]
    fn jpeg_exif_comes_before_xmp_and_icc_chunks_are_reassembled_in_order() {
        let bytes = jpeg_with(&[
            segment(0xE0, b"JFIF\0\x01\x01"),
            segment(0xE1, &[XMP_JPEG, &xmp_attribute(3)].concat()),
            icc_segment(2, 2, b"world"),
            segment(0xE1, &[&b"Exif\0\0"[..], &exif(6)].concat()),
            icc_segment(1, 2, b"hello "),
        ]);
        let metadata = read(&bytes, SourceFormat::Jpeg);
        assert_eq!(metadata.orientation, Some(Orientation::Rotate90));
        assert_eq!(metadata.icc.as_deref(), Some(&b"hello world"[..]));
        assert!(metadata.warnings.is_empty());
        // XMP only.
        let bytes = jpeg_with(&[segment(0xE1, &[XMP_JPEG, &xmp_attribute(3)].concat())]);
        assert_eq!(
            read(&bytes, SourceFormat::Jpeg).orientation,
            Some(Orientation::Rotate180)
        );
    }

    #[test]
    fn jpeg_segments_are_found_behind_junk_and_stop_at_the_first_scan() {
        let exif_segment = segment(0xE1, &[&b"Exif\0\0"[..], &exif(8)].concat());
        let bytes = [
            &[0xFF, 0xD8, 0x00, 0x12, 0xFF, 0x00, 0xFF, 0xFF][..],
            &segment(0xE0, b"JFIF\0"),
            b"junk",
            &exif_segment,
        ]
        .concat();
        assert_eq!(
            read(&bytes, SourceFormat::Jpeg).orientation,
            Some(Orientation::Rotate270)
        );
        let after_scan = [&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2][..], &exif_segment].concat();
        assert_eq!(read(&after_scan, SourceFormat::Jpeg).orientation, None);
        // Cut inside a segment, a length under 2, nothing after SOI: nothing, no panic.
        for bytes in [
            &exif_segment[..exif_segment.len() - 3],
            &[0xFF, 0xE1, 0x00, 0x01][..],
            &[][..],
        ] {
            let bytes = [&[0xFF, 0xD8][..], bytes].concat();
            assert_eq!(read(&bytes, SourceFormat::Jpeg).orientation, None);
        }
    }

    #[test]
    fn a_jpeg_icc_chunk_written_twice_counts_once() {
        let chunks = [icc_segment(1, 1, b"profile"), icc_segment(1, 1, b"profile")];
        let metadata = read(&jpeg_with(&chunks), SourceFormat::Jpeg);
        assert_eq!(metadata.icc.as_deref(), Some(&b"profile"[..]));
    }

    #[test]
    fn inconsistent_jpeg_icc_chunks_are_refused() {
        for chunks in [
            vec![icc_segment(1, 2, b"a")],
            vec![icc_segment(1, 2, b"a"), icc_segment(1, 2, b"b")],
            vec![icc_segment(1, 2, b"a"), icc_segment(2, 3, b"b")],
            vec![icc_segment(0, 1, b"a")],
            vec![icc_segment(1, 1, b"a"), icc_segment(2, 1, b"b")],
        ] {
            let metadata = read(&jpeg_with(&chunks), SourceFormat::Jpeg);
            assert_eq!(metadata.icc, None);
            assert!(
                metadata.warnings[0].starts_with("ICC profile ignored"),
                "{:?}",
                metadata.warnings
            );
        }
    }

    #[test]
    fn png_exif_icc_and_xmp_compressed_or_not() {
        let profile = vec![7u8; 3000];
        let iccp = [&b"sRGB-ish\0\0"[..], &zlib(&profile)].concat();
        let bytes = png_with(&[png_chunk(b"iCCP", &iccp), png_chunk(b"eXIf", &exif(5))]);
        let metadata = read(&bytes, SourceFormat::Png);
        assert_eq!(metadata.orientation, Some(Orientation::Rotate90FlipH));
        assert_eq!(metadata.icc, Some(profile));
        // XMP, plain and compressed; the element form.
        let element = b"<rdf:Description><tiff:Orientation>7</tiff:Orientation></rdf:Description>";
        let plain = [XMP_PNG_KEYWORD, b"\0\0\0en\0\0", element].concat();
        let compressed = [XMP_PNG_KEYWORD, b"\0\x01\0\0\0", &zlib(element)].concat();
        for itxt in [plain, compressed] {
            let bytes = png_with(&[png_chunk(b"iTXt", &itxt)]);
            let metadata = read(&bytes, SourceFormat::Png);
            assert_eq!(metadata.orientation, Some(Orientation::Rotate270FlipH));
        }
        // Another iTXt keyword is not XMP.
        let other = [&b"Comment\0\0\0\0\0"[..], &xmp_attribute(3)].concat();
        let bytes = png_with(&[png_chunk(b"iTXt", &other)]);
        assert_eq!(read(&bytes, SourceFormat::Png).orientation, None);
    }

    #[test]
    fn png_zlib_bombs_and_bad_streams_are_ignored() {
        let bomb = [&b"big\0\0"[..], &zlib(&vec![0u8; MAX_ICC_BYTES + 1])].concat();
        let bad = b"bad\0\0not zlib".to_vec();
        for iccp in [bomb, bad] {
            let metadata = read(&png_with(&[png_chunk(b"iCCP", &iccp)]), SourceFormat::Png);
            assert_eq!(metadata.icc, None);
            assert_eq!(metadata.warnings.len(), 1, "{:?}", metadata.warnings);
        }
        // A chunk longer than the file: the scan stops.
        let mut bytes = png_with(&[png_chunk(b"eXIf", &exif(6))]);
        bytes[33..37].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(read(&bytes, SourceFormat::Png).orientation, None);
    }

    #[test]
    fn webp_chunks_count_when_vp8x_announces_them() {
        let chunks = [
            webp_chunk(b"ICCP", b"profile"),
            webp_chunk(b"EXIF", &exif(2)),
            webp_chunk(b"XMP ", &xmp_attribute(4)),
        ];
        let metadata = read(
            &webp_with(WEBP_ICC | WEBP_EXIF | WEBP_XMP, &chunks),
            SourceFormat::Webp,
        );
        assert_eq!(metadata.orientation, Some(Orientation::FlipHorizontal));
        assert_eq!(metadata.icc.as_deref(), Some(&b"profile"[..]));
        // The EXIF chunk behind JPEG's prefix, as some writers store it.
        let prefixed = webp_chunk(b"EXIF", &[&b"Exif\0\0"[..], &exif(6)].concat());
        let metadata = read(&webp_with(WEBP_EXIF, &[prefixed]), SourceFormat::Webp);
        assert_eq!(metadata.orientation, Some(Orientation::Rotate90));
        // XMP where there is no EXIF; nothing the flags do not announce.
        let metadata = read(&webp_with(WEBP_XMP, &chunks), SourceFormat::Webp);
        assert_eq!(metadata.orientation, Some(Orientation::FlipVertical));
        assert_eq!(metadata.icc, None);
        assert_eq!(
            read(&webp_with(0, &chunks), SourceFormat::Webp).orientation,
            None
        );
    }

    #[test]
    fn xmp_orientation_forms() {
        assert_eq!(
            xmp_orientation(b"<d tiff:Orientation='8'/>"),
            Some(Orientation::Rotate270)
        );
        assert_eq!(
            xmp_orientation(b"<tiff:Orientation> 2 </tiff:Orientation>"),
            Some(Orientation::FlipHorizontal)
        );
        for bad in [
            &b"tiff:Orientation=\"9\""[..],
            b"tiff:Orientation=\"6",
            b"<tiff:Orientation>x</tiff:Orientation>",
            b"tiff:Orientation",
            b"",
        ] {
            assert_eq!(xmp_orientation(bad), None);
        }
        // A bad value first, a good one later.
        assert_eq!(
            xmp_orientation(b"tiff:Orientation=\"0\" tiff:Orientation=\"3\""),
            Some(Orientation::Rotate180)
        );
    }

    #[test]
    fn gif_extent_covers_every_frame() {
        let mut gif = b"GIF89a\x20\x00\x20\x00\x80\x00\x00".to_vec();
        gif.extend_from_slice(&[0; 6]); // global colour table, 2 entries
        gif.extend_from_slice(b"\x21\xF9\x04\x00\x00\x00\x00\x00"); // graphic control
        let frame = |left: u16, top: u16, width: u16, height: u16| {
            let mut frame = vec![0x2C];
            for v in [left, top, width, height] {
                frame.extend_from_slice(&v.to_le_bytes());
            }
            frame.extend_from_slice(&[0x00, 0x02, 0x02, 0x4C, 0x01, 0x00]);
            frame
        };
        gif.extend(frame(0, 0, 32, 32));
        gif.extend(frame(10, 65_000, 60_000, 1_000));
        gif.push(0x3B);
        assert_eq!(gif_extent(&gif), Some((60_010, 66_000)));
        // Cut in the second frame's descriptor: the first counts.
        assert_eq!(gif_extent(&gif[..gif.len() - 12]), Some((32, 32)));
        assert_eq!(gif_extent(b"GIF89a\x01"), None);
    }
}
