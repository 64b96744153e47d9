//! Test images, made here with encoders: no binary fixtures.
//!
//! Every picture is the same four flat quadrants (red, green, blue, yellow from the top left,
//! clockwise: red, green / blue, yellow), so that a rendition's orientation and colours can be
//! checked by sampling the middle of each quadrant.

use std::io::Cursor;

pub const RED: [u8; 3] = [230, 20, 20];
pub const GREEN: [u8; 3] = [20, 200, 40];
pub const BLUE: [u8; 3] = [30, 40, 220];
pub const YELLOW: [u8; 3] = [240, 220, 30];

/// The quadrants' colours as displayed: [top left, top right, bottom left, bottom right].
pub type Quadrants = [[u8; 3]; 4];
pub const UPRIGHT: Quadrants = [RED, GREEN, BLUE, YELLOW];

/// Quadrants as displayed once EXIF orientation `n` is applied to the upright pattern stored as is.
/// Written out by hand from the EXIF definitions (where the stored first row and column end up).
pub fn displayed_quadrants(orientation: u8) -> Quadrants {
    match orientation {
        1 => [RED, GREEN, BLUE, YELLOW],
        2 => [GREEN, RED, YELLOW, BLUE],
        3 => [YELLOW, BLUE, GREEN, RED],
        4 => [BLUE, YELLOW, RED, GREEN],
        5 => [RED, BLUE, GREEN, YELLOW],
        6 => [BLUE, RED, YELLOW, GREEN],
        7 => [YELLOW, GREEN, BLUE, RED],
        8 => [GREEN, YELLOW, RED, BLUE],
        other => panic!("no EXIF orientation {other}"),
    }
}

pub fn quadrant_rgb(width: u32, height: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let colour = match (x >= width / 2, y >= height / 2) {
                (false, false) => RED,
                (true, false) => GREEN,
                (false, true) => BLUE,
                (true, true) => YELLOW,
            };
            data.extend_from_slice(&colour);
        }
    }
    data
}

/// The quadrants with alpha: opaque at the top, half transparent at the bottom.
pub fn quadrant_rgba(width: u32, height: u32) -> Vec<u8> {
    quadrant_rgb(width, height)
        .chunks_exact(3)
        .enumerate()
        .flat_map(|(i, p)| {
            let alpha = if (i as u32 / width) >= height / 2 {
                128
            } else {
                255
            };
            [p[0], p[1], p[2], alpha]
        })
        .collect()
}

pub struct Jpeg {
    pub progressive: bool,
    pub cmyk: bool,
    pub orientation: Option<u8>,
}

pub const BASELINE: Jpeg = Jpeg {
    progressive: false,
    cmyk: false,
    orientation: None,
};

pub fn jpeg(width: u32, height: u32, options: Jpeg) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 92);
    encoder.set_progressive(options.progressive);
    if let Some(orientation) = options.orientation {
        encoder
            .add_app_segment(1, exif_orientation(orientation))
            .unwrap();
    }
    let rgb = quadrant_rgb(width, height);
    let (w, h) = (width as u16, height as u16);
    if options.cmyk {
        let cmyk: Vec<u8> = rgb
            .chunks_exact(3)
            .flat_map(|p| [255 - p[0], 255 - p[1], 255 - p[2], 0])
            .collect();
        encoder
            .encode(&cmyk, w, h, jpeg_encoder::ColorType::Cmyk)
            .unwrap();
    } else {
        encoder
            .encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
    }
    out
}

/// An APP1 Exif payload with one IFD0 entry: Orientation (0x0112, SHORT), big-endian.
fn exif_orientation(orientation: u8) -> Vec<u8> {
    [&b"Exif\0\0"[..], &tiff_orientation(orientation)].concat()
}

/// The TIFF structure of an EXIF block (as PNG's `eXIf` and WebP's `EXIF` chunks hold it) with
/// one IFD0 entry: Orientation (0x0112, SHORT), big-endian.
pub fn tiff_orientation(orientation: u8) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01".to_vec();
    tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0, orientation, 0, 0]);
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    tiff
}

/// An XMP packet whose only orientation is `tiff:Orientation`, as exiftool writes it (an
/// attribute) or as Adobe's toolkit may (an element).
pub fn xmp_orientation(orientation: u8, element: bool) -> Vec<u8> {
    let description = if element {
        format!(
            "<rdf:Description rdf:about=\"\"><tiff:Orientation>{orientation}</tiff:Orientation>\
             </rdf:Description>"
        )
    } else {
        format!("<rdf:Description rdf:about=\"\" tiff:Orientation=\"{orientation}\"/>")
    };
    format!(
        "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\
         <x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF \
         xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" \
         xmlns:tiff=\"http://ns.adobe.com/tiff/1.0/\">{description}</rdf:RDF></x:xmpmeta>\
         <?xpacket end=\"w\"?>"
    )
    .into_bytes()
}

/// The quadrants as a baseline JPEG with an XMP APP1 segment and no EXIF.
pub fn jpeg_with_xmp(width: u32, height: u32, xmp: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 92);
    encoder
        .add_app_segment(1, [&b"http://ns.adobe.com/xap/1.0/\0"[..], xmp].concat())
        .unwrap();
    encoder
        .encode(
            &quadrant_rgb(width, height),
            width as u16,
            height as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .unwrap();
    out
}

/// `png` with a chunk written by hand right after IHDR (CRC over type and data).
pub fn png_with_chunk(png: &[u8], kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    // Signature (8), then IHDR: length (4), type (4), data (13), CRC (4).
    let (head, tail) = png.split_at(33);
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    chunk.extend_from_slice(&crc32fast::hash(&chunk[4..]).to_be_bytes());
    [head, &chunk, tail].concat()
}

/// An uncompressed `iTXt` chunk's data holding XMP.
pub fn png_xmp_itxt(xmp: &[u8]) -> Vec<u8> {
    [&b"XML:com.adobe.xmp\0\0\0\0\0"[..], xmp].concat()
}

/// A simple (VP8 or VP8L) WebP made extended: a VP8X header announcing `kind` ("EXIF" or
/// "XMP "), the image chunk, then that chunk with `data`.
pub fn webp_with_chunk(
    webp: &[u8],
    width: u32,
    height: u32,
    kind: &[u8; 4],
    data: &[u8],
) -> Vec<u8> {
    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_vec();
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(0);
        }
        out
    }
    let flag: u8 = if kind == b"EXIF" { 0x08 } else { 0x04 };
    let mut vp8x = vec![flag, 0, 0, 0];
    vp8x.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
    // The image chunk as it is, from after "RIFF", size and "WEBP".
    let body = [
        &b"WEBP"[..],
        &chunk(b"VP8X", &vp8x),
        &webp[12..],
        &chunk(kind, data),
    ]
    .concat();
    [&b"RIFF"[..], &(body.len() as u32).to_le_bytes(), &body].concat()
}

pub enum Png {
    Rgb8,
    Rgb16,
    Palette,
    Gray,
    Rgba8,
}

pub fn png(width: u32, height: u32, kind: Png) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    let rgb = quadrant_rgb(width, height);
    let data: Vec<u8> = match kind {
        Png::Rgb8 => {
            encoder.set_color(png::ColorType::Rgb);
            rgb
        }
        Png::Rgb16 => {
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Sixteen);
            rgb.iter()
                .flat_map(|v| (u16::from(*v) * 257).to_be_bytes())
                .collect()
        }
        Png::Palette => {
            encoder.set_color(png::ColorType::Indexed);
            let palette: Vec<u8> = [RED, GREEN, BLUE, YELLOW].concat();
            encoder.set_palette(palette.clone());
            rgb.chunks_exact(3)
                .map(|p| palette.chunks_exact(3).position(|c| c == p).unwrap() as u8)
                .collect()
        }
        Png::Gray => {
            encoder.set_color(png::ColorType::Grayscale);
            rgb.chunks_exact(3).map(|p| p[0]).collect()
        }
        Png::Rgba8 => {
            encoder.set_color(png::ColorType::Rgba);
            quadrant_rgba(width, height)
        }
    };
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&data).unwrap();
    writer.finish().unwrap();
    out
}

pub fn webp(width: u32, height: u32, alpha: bool) -> Vec<u8> {
    let memory = if alpha {
        webp::Encoder::from_rgba(&quadrant_rgba(width, height), width, height).encode(90.0)
    } else {
        webp::Encoder::from_rgb(&quadrant_rgb(width, height), width, height).encode(90.0)
    };
    memory.to_vec()
}

/// Two frames: the quadrants, then a black frame that must not be the one rendered.
pub fn gif(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut out);
        let first = image::RgbaImage::from_raw(
            width,
            height,
            quadrant_rgb(width, height)
                .chunks_exact(3)
                .flat_map(|p| [p[0], p[1], p[2], 255])
                .collect(),
        )
        .unwrap();
        let second = image::RgbaImage::from_pixel(width, height, image::Rgba([0, 0, 0, 255]));
        encoder
            .encode_frames([image::Frame::new(first), image::Frame::new(second)])
            .unwrap();
    }
    out
}

/// A valid JPEG whose header claims `width` x `height`: a decompression bomb.
pub fn jpeg_bomb(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = jpeg(64, 64, BASELINE);
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF0 marker");
    // FFC0, length (2), precision (1), then height and width.
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

/// A PNG whose IHDR claims `width` x `height` (CRC fixed up): a decompression bomb.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = png(64, 64, Png::Rgb8);
    // Signature (8), length (4), "IHDR" (4), then width and height; the CRC covers type + data.
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32fast::hash(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// Entropy-coded data overwritten with bytes no Huffman table decodes.
pub fn corrupt_jpeg() -> Vec<u8> {
    let mut bytes = jpeg(256, 256, BASELINE);
    let sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
    let start = sos + 40;
    let end = bytes.len() - 40;
    for (i, byte) in bytes[start..end].iter_mut().enumerate() {
        *byte = if i % 2 == 0 { 0xFF } else { 0x00 };
    }
    bytes
}

pub fn truncated(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len() * 2 / 3);
    bytes
}

/// Decodes a rendition with the `image` crate (independent of the processor's own JPEG decoder).
pub fn decode(bytes: &[u8]) -> (image::ImageFormat, image::DynamicImage) {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .unwrap();
    let format = reader.format().expect("a known image format");
    (format, reader.decode().expect("a decodable rendition"))
}

/// The colours in the middle of each quadrant: [top left, top right, bottom left, bottom right].
pub fn sample_quadrants(image: &image::DynamicImage) -> Quadrants {
    let rgb = image.to_rgb8();
    let (w, h) = rgb.dimensions();
    let at = |x: u32, y: u32| rgb.get_pixel(x, y).0;
    [
        at(w / 4, h / 4),
        at(3 * w / 4, h / 4),
        at(w / 4, 3 * h / 4),
        at(3 * w / 4, 3 * h / 4),
    ]
}

pub fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 40)
}

pub fn assert_quadrants(image: &image::DynamicImage, expected: Quadrants, what: &str) {
    let seen = sample_quadrants(image);
    for (i, (s, e)) in seen.iter().zip(expected).enumerate() {
        assert!(
            close(*s, e),
            "{what}: quadrant {i} is {s:?}, expected {e:?} (all: {seen:?})"
        );
    }
}
