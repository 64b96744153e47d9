//! Which renditions a source gets: sizes (never upscaled, aspect kept), formats, keys, and what to
//! do when a rendition is already there.

use std::cmp::Ordering;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use shared::ObjectKey;

use crate::config::Config;
use crate::error::Error;
use crate::task::compare_sequencers;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Webp => "webp",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
        }
    }
}

/// One rendition to produce: its configured width, its size as displayed (after EXIF orientation),
/// its format and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionSpec {
    pub width_label: u32,
    pub width: u32,
    pub height: u32,
    pub format: Format,
    pub key: ObjectKey,
}

/// The size of a rendition `width` wide from a `source` (width, height) image: never wider than
/// the source, the aspect kept, at least one pixel high.
pub fn fit(source: (u32, u32), width: u32) -> (u32, u32) {
    let (source_width, source_height) = source;
    let width = width.min(source_width).max(1);
    let height = (u64::from(source_height) * u64::from(width) + u64::from(source_width) / 2)
        / u64::from(source_width.max(1));
    (width, (height as u32).clamp(1, source_height.max(1)))
}

/// The key of a rendition: `{output prefix}{source key}/{width}.{ext}`. Keeping the whole source key
/// keeps `a.png` and `a.jpg` apart and groups a source's renditions.
pub fn rendition_key(
    output_prefix: &str,
    source: &ObjectKey,
    width: u32,
    format: Format,
) -> Result<ObjectKey, Error> {
    Ok(ObjectKey::new(format!(
        "{output_prefix}{source}/{width}.{}",
        format.extension()
    ))?)
}

/// Every rendition of a source whose displayed size is `displayed` (width, height). Opaque images
/// become JPEG, images with transparency PNG; WebP beside either when configured.
pub fn plan(
    config: &Config,
    source: &ObjectKey,
    displayed: (u32, u32),
    has_alpha: bool,
) -> Result<Vec<RenditionSpec>, Error> {
    let mut formats = vec![if has_alpha { Format::Png } else { Format::Jpeg }];
    if config.webp {
        formats.push(Format::Webp);
    }
    let mut specs = Vec::with_capacity(config.widths.len() * formats.len());
    for &width_label in &config.widths {
        let (width, height) = fit(displayed, width_label);
        for &format in &formats {
            specs.push(RenditionSpec {
                width_label,
                width,
                height,
                format,
                key: rendition_key(&config.output_prefix, source, width_label, format)?,
            });
        }
    }
    Ok(specs)
}

/// Metadata values travel as HTTP headers: printable ASCII only, so the key is percent-encoded.
const METADATA_ESCAPES: &AsciiSet = &CONTROLS.add(b'%').add(b' ').add(b'"');

/// What a rendition says about its source, in its object metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceStamp {
    pub key: String,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub sequencer: Option<String>,
}

impl SourceStamp {
    pub const KEY: &'static str = "source-key";
    pub const ETAG: &'static str = "source-etag";
    pub const VERSION: &'static str = "source-version-id";
    pub const SEQUENCER: &'static str = "source-sequencer";

    /// Object metadata (`x-amz-meta-*`) entries. The key is percent-encoded: metadata is ASCII.
    pub fn to_metadata(&self) -> Vec<(&'static str, String)> {
        let key = utf8_percent_encode(&self.key, METADATA_ESCAPES).to_string();
        let mut entries = vec![(Self::KEY, key)];
        let optional = [
            (Self::ETAG, &self.etag),
            (Self::VERSION, &self.version_id),
            (Self::SEQUENCER, &self.sequencer),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                entries.push((name, value.clone()));
            }
        }
        entries
    }

    pub fn from_metadata<'a>(mut get: impl FnMut(&str) -> Option<&'a str>) -> Self {
        SourceStamp {
            key: get(Self::KEY)
                .and_then(|raw| percent_decode_str(raw).decode_utf8().ok())
                .map(String::from)
                .unwrap_or_default(),
            etag: get(Self::ETAG).map(str::to_owned),
            version_id: get(Self::VERSION).map(str::to_owned),
            sequencer: get(Self::SEQUENCER).map(str::to_owned),
        }
    }
}

/// What to do with a rendition that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExisting {
    /// It was rendered from this very source (an earlier attempt): done.
    Same,
    /// It was rendered from an older write of the key: replace it.
    Replace,
    /// It was rendered from a newer write, or the order cannot be told: leave it.
    Keep,
}

pub fn on_existing(ours: &SourceStamp, theirs: &SourceStamp) -> OnExisting {
    let same_revision = match (&ours.version_id, &theirs.version_id) {
        (Some(a), Some(b)) => a == b,
        _ => ours.etag.is_some() && ours.etag == theirs.etag && ours.sequencer == theirs.sequencer,
    };
    if same_revision {
        return OnExisting::Same;
    }
    match (&ours.sequencer, &theirs.sequencer) {
        (Some(a), Some(b)) if compare_sequencers(a, b) == Ordering::Greater => OnExisting::Replace,
        (Some(_), None) => OnExisting::Replace,
        _ => OnExisting::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::config::Env;

    #[test]
    fn fit_keeps_aspect_and_never_upscales() {
        assert_eq!(fit((6000, 4000), 1280), (1280, 853));
        assert_eq!(fit((4000, 6000), 160), (160, 240));
        assert_eq!(fit((100, 50), 1280), (100, 50));
        assert_eq!(fit((1, 1), 160), (1, 1));
        // A very wide panorama keeps at least one row.
        assert_eq!(fit((30_000, 10), 160), (160, 1));
        assert_eq!(fit((10, 30_000), 160), (10, 30_000));
    }

    #[test]
    fn plan_names_every_rendition() {
        let config = Config::from_env(&Env::from_pairs([
            ("TASK_TABLE", "t"),
            ("WEBP_RENDITIONS", "true"),
            ("RENDITION_WIDTHS", "160,1280"),
        ]))
        .unwrap();
        let source = ObjectKey::new("images/a b+c.png").unwrap();
        let specs = plan(&config, &source, (2000, 1000), true).unwrap();
        let keys: Vec<&str> = specs.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "thumbnails/images/a b+c.png/160.png",
                "thumbnails/images/a b+c.png/160.webp",
                "thumbnails/images/a b+c.png/1280.png",
                "thumbnails/images/a b+c.png/1280.webp",
            ]
        );
        assert_eq!((specs[0].width, specs[0].height), (160, 80));
        let opaque = plan(&config, &source, (100, 100), false).unwrap();
        assert_eq!(opaque[0].format, Format::Jpeg);
        // Small sources are not upscaled, but every configured width has its key.
        assert_eq!((opaque[2].width, opaque[2].width_label), (100, 1280));
    }

    #[test]
    fn a_key_too_long_for_s3_is_refused() {
        let source = ObjectKey::new(format!("images/{}.jpg", "a".repeat(1000))).unwrap();
        assert!(matches!(
            rendition_key("thumbnails/", &source, 160, Format::Jpeg),
            Err(Error::InvalidKey(_))
        ));
    }

    #[test]
    fn stamps_round_trip_through_metadata() {
        let stamp = SourceStamp {
            key: "images/café au lait+1.jpg".into(),
            etag: Some("abc".into()),
            version_id: None,
            sequencer: Some("0055".into()),
        };
        let metadata = stamp.to_metadata();
        assert!(metadata.iter().all(|(_, v)| v.is_ascii()));
        let back = SourceStamp::from_metadata(|name| {
            metadata
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        });
        assert_eq!(back, stamp);
    }

    #[test]
    fn existing_renditions_are_replaced_only_by_newer_sources() {
        let stamp = |etag: &str, sequencer: Option<&str>| SourceStamp {
            key: "images/a.jpg".into(),
            etag: Some(etag.into()),
            version_id: None,
            sequencer: sequencer.map(str::to_owned),
        };
        let ours = stamp("new", Some("0055AED6DCD90281E6"));
        assert_eq!(on_existing(&ours, &ours.clone()), OnExisting::Same);
        assert_eq!(
            on_existing(&ours, &stamp("old", Some("0055AED6DCD90281E5"))),
            OnExisting::Replace
        );
        assert_eq!(
            on_existing(&ours, &stamp("newer", Some("0055AED6DCD90281E7"))),
            OnExisting::Keep
        );
        assert_eq!(on_existing(&ours, &stamp("old", None)), OnExisting::Replace);
        assert_eq!(
            on_existing(&stamp("x", None), &stamp("y", None)),
            OnExisting::Keep
        );
    }
}
