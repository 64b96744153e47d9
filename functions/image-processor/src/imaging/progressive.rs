//! Progressive JPEGs decoded at a reduced scale stop before their last refinement scans.
//!
//! A progressive JPEG sends every coefficient coarse first and its lowest bits last
//! ("successive approximation"): libjpeg's default script ends with refinement scans that add
//! the last bit of every AC coefficient, half of a photograph's bytes and more than half of its
//! decoding time (they are the slowest scans to decode). Shrunk on load to half size or less, then
//! resized and encoded again, a thumbnail cannot show that bit: each of its pixels averages four
//! or more of the source's, and the missing bit is at most one quantisation step of a
//! coefficient, which libjpeg's block smoothing estimates from the neighbours. So when every
//! coefficient of every component is already known but for its last bit, the stream is cut
//! before the next such scan and ended there, and libjpeg decodes it as a complete image.
//! Everything else (baseline files, scripts in other orders, DC not yet exact, scales above
//! 4/8) is decoded whole.

/// Where to end `jpeg` (the offset of a start-of-scan marker) when it is decoded at DCT scale
/// `scale`/8, or `None` to decode it whole. Reads the markers and skips the entropy-coded data
/// (a pass over the bytes); anything unexpected means `None`, and libjpeg reads the file as it is.
pub fn cut_before_last_bits(jpeg: &[u8], scale: u8) -> Option<usize> {
    if scale > 4 {
        return None;
    }
    let mut components: Vec<(u8, [i8; 64])> = Vec::new();
    let mut progressive = false;
    let mut at = 2;
    loop {
        // Markers may be preceded by fill bytes (0xFF).
        while *jpeg.get(at)? == 0xFF && *jpeg.get(at + 1)? == 0xFF {
            at += 1;
        }
        if *jpeg.get(at)? != 0xFF {
            return None;
        }
        let marker = *jpeg.get(at + 1)?;
        match marker {
            0xD9 => return None,
            0xD0..=0xD7 | 0x01 => {
                at += 2;
                continue;
            }
            _ => {}
        }
        let length = usize::from(u16::from_be_bytes([*jpeg.get(at + 2)?, *jpeg.get(at + 3)?]));
        let segment = jpeg.get(at + 4..at + 2 + length)?;
        match marker {
            // Start of frame: progressive (Huffman) or not, and the components.
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                progressive = marker == 0xC2;
                if !progressive {
                    return None;
                }
                let count = usize::from(*segment.get(5)?);
                components = (0..count)
                    .map(|i| segment.get(6 + 3 * i).map(|&id| (id, [-1i8; 64])))
                    .collect::<Option<_>>()?;
            }
            0xDA => {
                if !progressive || components.is_empty() {
                    return None;
                }
                let count = usize::from(*segment.first()?);
                let ids = segment.get(1..1 + 2 * count)?.iter().step_by(2);
                let ids: Vec<u8> = ids.copied().collect();
                let spectral = segment.get(1 + 2 * count..4 + 2 * count)?;
                let (start, end) = (usize::from(spectral[0]), usize::from(spectral[1]));
                let (high, low) = (spectral[2] >> 4, spectral[2] & 0x0F);
                if start > end || end > 63 {
                    return None;
                }
                let last_bits_only = components.iter().all(|(_, bits)| {
                    bits[0] == 0 && bits[1..].iter().all(|&b| (0..=1).contains(&b))
                });
                if start > 0 && high > 0 && low == 0 && last_bits_only {
                    return Some(at);
                }
                for id in ids {
                    let (_, bits) = components.iter_mut().find(|(c, _)| *c == id)?;
                    for bit in &mut bits[start..=end] {
                        *bit = low as i8;
                    }
                }
                at = skip_entropy_data(jpeg, at + 2 + length)?;
                continue;
            }
            _ => {}
        }
        at += 2 + length;
    }
}

/// The offset of the marker that ends the entropy-coded data starting at `from`: an 0xFF that is
/// neither a stuffed byte (0xFF00) nor a restart marker.
fn skip_entropy_data(jpeg: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = from + memchr::memchr(0xFF, jpeg.get(from..)?)?;
        match *jpeg.get(at + 1)? {
            0x00 | 0xD0..=0xD7 | 0xFF => from = at + 1,
            _ => return Some(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream with the given scans (components, Ss, Se, Ah, Al), each with a little entropy
    /// data holding a stuffed 0xFF and a restart marker.
    fn stream(components: u8, scans: &[(&[u8], u8, u8, u8, u8)]) -> (Vec<u8>, Vec<usize>) {
        let mut out = vec![0xFF, 0xD8];
        out.extend_from_slice(&[
            0xFF,
            0xC2,
            0,
            8 + 3 * components,
            8,
            0,
            16,
            0,
            16,
            components,
        ]);
        for id in 1..=components {
            out.extend_from_slice(&[id, 0x11, 0]);
        }
        let mut offsets = Vec::new();
        for (ids, ss, se, ah, al) in scans {
            offsets.push(out.len());
            out.extend_from_slice(&[0xFF, 0xDA, 0, 6 + 2 * ids.len() as u8, ids.len() as u8]);
            for id in *ids {
                out.extend_from_slice(&[*id, 0]);
            }
            out.extend_from_slice(&[*ss, *se, ah << 4 | al]);
            out.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56]);
        }
        out.extend_from_slice(&[0xFF, 0xD9]);
        (out, offsets)
    }

    /// libjpeg's default progression for three components (jcparam.c, jpeg_simple_progression).
    const SIMPLE: [(&[u8], u8, u8, u8, u8); 10] = [
        (&[1, 2, 3], 0, 0, 0, 1),
        (&[1], 1, 5, 0, 2),
        (&[3], 1, 63, 0, 1),
        (&[2], 1, 63, 0, 1),
        (&[1], 6, 63, 0, 2),
        (&[1], 1, 63, 2, 1),
        (&[1, 2, 3], 0, 0, 1, 0),
        (&[3], 1, 63, 1, 0),
        (&[2], 1, 63, 1, 0),
        (&[1], 1, 63, 1, 0),
    ];

    #[test]
    fn libjpegs_default_script_stops_before_the_last_bits_of_ac() {
        let (jpeg, offsets) = stream(3, &SIMPLE);
        assert_eq!(cut_before_last_bits(&jpeg, 3), Some(offsets[7]));
        assert_eq!(cut_before_last_bits(&jpeg, 4), Some(offsets[7]));
        // Above half size the last bits can show: decoded whole.
        assert_eq!(cut_before_last_bits(&jpeg, 5), None);
    }

    #[test]
    fn no_cut_while_dc_or_some_ac_is_coarser_than_one_bit() {
        // The DC refinement comes last: DC is not exact before it.
        let mut late_dc = SIMPLE.to_vec();
        let dc = late_dc.remove(6);
        late_dc.push(dc);
        assert_eq!(cut_before_last_bits(&stream(3, &late_dc).0, 2), None);
        // Cb's AC never sent: nothing to cut before.
        let missing: Vec<_> = SIMPLE.iter().copied().filter(|s| s.0 != [2]).collect();
        assert_eq!(cut_before_last_bits(&stream(3, &missing).0, 2), None);
        // Spectral selection only (no successive approximation): nothing is a last bit.
        let spectral = [
            (&[1u8, 2, 3][..], 0, 0, 0, 0),
            (&[1][..], 1, 63, 0, 0),
            (&[2][..], 1, 63, 0, 0),
            (&[3][..], 1, 63, 0, 0),
        ];
        assert_eq!(cut_before_last_bits(&stream(3, &spectral).0, 2), None);
    }

    #[test]
    fn baseline_and_broken_streams_are_decoded_whole() {
        let (mut jpeg, _) = stream(3, &SIMPLE);
        jpeg[3] = 0xC0;
        assert_eq!(cut_before_last_bits(&jpeg, 2), None);
        let (jpeg, offsets) = stream(3, &SIMPLE);
        for end in [3, 20, offsets[3] + 5, offsets[7] - 1] {
            assert_eq!(cut_before_last_bits(&jpeg[..end], 2), None, "{end}");
        }
    }
}
