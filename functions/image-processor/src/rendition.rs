//! Which renditions a source gets: sizes (never upscaled, aspect kept), formats, keys, and what to
//! do when a rendition is already there.

use std::cmp::Ordering;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use shared::ObjectKey;

use crate::config::Config;
use crate::error::Error;
use crate::store::Revision;
use crate::task::{compare_sequencers, Action, Task};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    /// Animated sources' primary rendition.
    Gif,
    Webp,
    Avif,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Gif => "gif",
            Format::Webp => "webp",
            Format::Avif => "avif",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Gif => "image/gif",
            Format::Webp => "image/webp",
            Format::Avif => "image/avif",
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

impl RenditionSpec {
    /// This rendition of an animated source: GIF for the primary (JPEG or PNG) one, animated
    /// WebP for WebP, and none for AVIF (animated AVIF is not made: no encoder here does it fast).
    pub fn animated(self) -> Result<Option<Self>, Error> {
        let format = match self.format {
            Format::Jpeg | Format::Png | Format::Gif => Format::Gif,
            Format::Webp => Format::Webp,
            Format::Avif => return Ok(None),
        };
        let stem = self
            .key
            .as_str()
            .strip_suffix(self.format.extension())
            .ok_or_else(|| Error::Encode(format!("rendition key {} has no extension", self.key)))?;
        Ok(Some(RenditionSpec {
            key: ObjectKey::new(format!("{stem}{}", format.extension()))?,
            format,
            ..self
        }))
    }
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
        "{}{width}.{}",
        renditions_prefix(output_prefix, source),
        format.extension()
    ))?)
}

/// Where a source's renditions are: `{output prefix}{source key}/`. Renditions of a source whose
/// key continues past a `/` there (`a.jpg/b.jpg`) are further down, not right under it.
pub fn renditions_prefix(output_prefix: &str, source: &ObjectKey) -> String {
    format!("{output_prefix}{source}/")
}

/// Every rendition of a source whose displayed size is `displayed` (width, height). Opaque images
/// become JPEG, images with transparency PNG; WebP and AVIF beside either when configured. An
/// animated source's renditions are then made animated by [`RenditionSpec::animated`].
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
    if config.avif {
        formats.push(Format::Avif);
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
    /// It was rendered from a newer write: leave it.
    Keep,
    /// The order cannot be told (our event has no sequencer): replace it only if our write is
    /// still the key's current object, read after the rendition was.
    IfOursCurrent,
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
        (Some(_), Some(_)) => OnExisting::Keep,
        (Some(_), None) => OnExisting::Replace,
        (None, _) => OnExisting::IfOursCurrent,
    }
}

/// Whether `current` (the key's object as read now) is the write a stamp names: the same
/// version, or on an unversioned bucket the same ETag (a later write of the very same bytes
/// counts as it, and has the same renditions).
pub fn is_current(stamp: &SourceStamp, current: &Revision) -> bool {
    match (&stamp.version_id, &current.version_id) {
        (Some(a), Some(b)) => a == b,
        _ => stamp.etag.as_deref() == Some(current.etag.as_str()),
    }
}

/// What to do with a rendition of a removed source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRemoval {
    /// It was made from a write of the key older than the removal: delete it.
    Delete,
    /// It was made from a newer write (a late removal event), from another version than the
    /// one deleted, or from another source: leave it.
    Keep,
    /// The removal and the rendition cannot be ordered (an event without a sequencer): delete it
    /// only if the source is absent, read after the rendition was.
    IfSourceAbsent,
}

/// Decides the fate of a rendition (its stamp `theirs`) when its source was removed by the event
/// that made `removal`. S3's sequencers order the events of one key: a rendition whose source
/// write has a smaller sequencer than the removal's was made from what the removal took away.
pub fn on_removal(removal: &Task, theirs: &SourceStamp) -> OnRemoval {
    if theirs.key != removal.key.as_str() {
        return OnRemoval::Keep;
    }
    let delete_marker = matches!(
        removal.action,
        Action::RemoveRenditions {
            delete_marker: true
        }
    );
    // One version deleted for good: the key's current object may well be another one.
    if let (false, Some(version)) = (delete_marker, &removal.version_id) {
        return if theirs.version_id.as_ref() == Some(version) {
            OnRemoval::Delete
        } else {
            OnRemoval::Keep
        };
    }
    match (&removal.sequencer, &theirs.sequencer) {
        (Some(removed), Some(made)) => match compare_sequencers(made, removed) {
            Ordering::Less => OnRemoval::Delete,
            _ => OnRemoval::Keep,
        },
        _ => OnRemoval::IfSourceAbsent,
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
        // Without our sequencer (moto's events) the source read now decides.
        assert_eq!(
            on_existing(&stamp("x", None), &stamp("y", None)),
            OnExisting::IfOursCurrent
        );
        assert_eq!(
            on_existing(&stamp("x", None), &stamp("y", Some("0055AED6DCD90281E5"))),
            OnExisting::IfOursCurrent
        );
        assert_eq!(
            on_existing(&stamp("x", None), &stamp("x", None)),
            OnExisting::Same
        );
    }

    #[test]
    fn the_current_source_is_told_by_version_or_etag() {
        let stamp = |etag: &str, version: Option<&str>| SourceStamp {
            key: "images/a.jpg".into(),
            etag: Some(etag.into()),
            version_id: version.map(str::to_owned),
            sequencer: None,
        };
        let current = |etag: &str, version: Option<&str>| Revision {
            etag: etag.into(),
            version_id: version.map(str::to_owned),
        };
        assert!(is_current(&stamp("e1", None), &current("e1", None)));
        assert!(!is_current(&stamp("e1", None), &current("e2", None)));
        assert!(is_current(
            &stamp("e1", Some("v1")),
            &current("e1", Some("v1"))
        ));
        // The same bytes written again in a versioned bucket: another write.
        assert!(!is_current(
            &stamp("e1", Some("v1")),
            &current("e1", Some("v2"))
        ));
        let mut no_etag = stamp("e1", None);
        no_etag.etag = None;
        assert!(!is_current(&no_etag, &current("", None)));
    }

    fn removal(sequencer: Option<&str>, version_id: Option<&str>, delete_marker: bool) -> Task {
        Task {
            id: "removal".into(),
            action: Action::RemoveRenditions { delete_marker },
            bucket: "overseas-origin".into(),
            key: ObjectKey::new("images/a.jpg").unwrap(),
            size: None,
            etag: None,
            version_id: version_id.map(str::to_owned),
            sequencer: sequencer.map(str::to_owned),
            event_time: None,
        }
    }

    fn made_from(sequencer: Option<&str>, version_id: Option<&str>) -> SourceStamp {
        SourceStamp {
            key: "images/a.jpg".into(),
            etag: Some("e".into()),
            version_id: version_id.map(str::to_owned),
            sequencer: sequencer.map(str::to_owned),
        }
    }

    #[test]
    fn a_removal_deletes_only_renditions_of_older_writes() {
        let delete = removal(Some("0055AED6DCD90281E6"), None, false);
        // Made from the write the removal took away (or an older one): deleted.
        assert_eq!(
            on_removal(&delete, &made_from(Some("0055AED6DCD90281E5"), None)),
            OnRemoval::Delete
        );
        // Sequencers of different lengths compare once the shorter is padded with zeros.
        assert_eq!(
            on_removal(&delete, &made_from(Some("0055AED6DCD90281E5FF"), None)),
            OnRemoval::Delete
        );
        // Made from a write after the removal (the key was written again; this event is late).
        assert_eq!(
            on_removal(&delete, &made_from(Some("0055AED6DCD90281E7"), None)),
            OnRemoval::Keep
        );
        assert_eq!(
            on_removal(&delete, &made_from(Some("0055AED6DCD90281E601"), None)),
            OnRemoval::Keep
        );
        // Another source's rendition, or one whose stamp cannot be read: never touched.
        let mut other = made_from(Some("0001"), None);
        other.key = "images/a.jpg/b.jpg".into();
        assert_eq!(on_removal(&delete, &other), OnRemoval::Keep);
        other.key = String::new();
        assert_eq!(on_removal(&delete, &other), OnRemoval::Keep);
    }

    #[test]
    fn without_sequencers_the_source_decides() {
        // moto's events carry no sequencer: neither its removals nor the renditions' sources.
        assert_eq!(
            on_removal(&removal(None, None, false), &made_from(None, None)),
            OnRemoval::IfSourceAbsent
        );
        assert_eq!(
            on_removal(&removal(None, None, false), &made_from(Some("0055"), None)),
            OnRemoval::IfSourceAbsent
        );
        assert_eq!(
            on_removal(&removal(Some("0055"), None, false), &made_from(None, None)),
            OnRemoval::IfSourceAbsent
        );
    }

    #[test]
    fn versioned_removals() {
        // A version deleted for good: only its own renditions, whatever the order.
        let version = removal(Some("0055AED6DCD90281E9"), Some("v1"), false);
        assert_eq!(
            on_removal(&version, &made_from(Some("0055AED6DCD90281E5"), Some("v1"))),
            OnRemoval::Delete
        );
        // The current version is another one, older than the deletion: kept.
        assert_eq!(
            on_removal(&version, &made_from(Some("0055AED6DCD90281E7"), Some("v2"))),
            OnRemoval::Keep
        );
        assert_eq!(
            on_removal(&version, &made_from(Some("0055AED6DCD90281E7"), None)),
            OnRemoval::Keep
        );
        // A delete marker hides whatever was current: ordered by sequencer, its own version id
        // (the marker's) names no source.
        let marker = removal(Some("0055AED6DCD90281E9"), Some("marker"), true);
        assert_eq!(
            on_removal(&marker, &made_from(Some("0055AED6DCD90281E7"), Some("v2"))),
            OnRemoval::Delete
        );
        assert_eq!(
            on_removal(&marker, &made_from(Some("0055AED6DCD90281EA"), Some("v3"))),
            OnRemoval::Keep
        );
    }
}
