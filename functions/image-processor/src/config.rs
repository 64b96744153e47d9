//! The image processor's configuration, parsed once at cold start from the environment.

use std::time::Duration;

use shared::config::{error, ConfigError, Env};

/// Widths of the renditions when `RENDITION_WIDTHS` is unset.
pub const DEFAULT_WIDTHS: [u32; 4] = [160, 320, 640, 1280];
/// JPEG encoders cap a side at 65,535; thumbnails have no business near that.
const MAX_WIDTH: u32 = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Key prefixes whose images get thumbnails (`INPUT_PREFIXES`, comma-separated).
    pub input_prefixes: Vec<String>,
    /// Where renditions are written (`OUTPUT_PREFIX`); events under it are ignored.
    pub output_prefix: String,
    /// Rendition widths, ascending, no duplicates (`RENDITION_WIDTHS`).
    pub widths: Vec<u32>,
    /// Also write a WebP beside each JPEG or PNG rendition (`WEBP_RENDITIONS`).
    pub webp: bool,
    /// Also write an AVIF beside each still JPEG or PNG rendition (`AVIF_RENDITIONS`).
    pub avif: bool,
    pub jpeg_quality: u8,
    pub webp_quality: u8,
    /// AVIF quality (`AVIF_QUALITY`, 1..=100) and encoder speed (`AVIF_SPEED`, 1 slowest to 10).
    pub avif_quality: u8,
    pub avif_speed: u8,
    /// Animated GIF and WebP sources get animated renditions (`ANIMATION=animate`) or their
    /// first frame (`first-frame`).
    pub animate: bool,
    /// Past either bound an animation's renditions are its first frame (`MAX_FRAMES`,
    /// `MAX_ANIMATION_PIXELS`: frames times canvas pixels decoded).
    pub max_frames: u32,
    pub max_animation_pixels: u64,
    /// Largest source object read, in bytes (`MAX_OBJECT_BYTES`).
    pub max_object_bytes: u64,
    /// Largest source image decoded, in pixels, checked against the header (`MAX_PIXELS`).
    pub max_pixels: u64,
    pub task_table: String,
    /// How long a finished task's record keeps duplicates away (`TASK_TTL`).
    pub task_ttl: Duration,
    /// Records of one batch handled at once (`BATCH_CONCURRENCY`).
    pub batch_concurrency: usize,
    /// Images decoded and encoded at once (`IMAGE_CONCURRENCY`, default: the cores).
    pub image_concurrency: usize,
    pub cache_control: String,
    /// AWS calls end this long before the invocation's deadline (`DEADLINE_MARGIN`), so that a
    /// claim can still be released and the batch response sent.
    pub deadline_margin: Duration,
    pub metrics_namespace: String,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let input_prefixes = env.list_or("INPUT_PREFIXES", &["images/"]);
        let output_prefix = env
            .get("OUTPUT_PREFIX")
            .unwrap_or_else(|| "thumbnails/".to_owned());
        check_prefixes(&input_prefixes, &output_prefix)?;
        let widths = env.parse_or(
            "RENDITION_WIDTHS",
            DEFAULT_WIDTHS.to_vec(),
            "comma-separated widths in pixels, each 1..=8192, such as 160,320,640,1280",
            parse_widths,
        )?;
        let quality = "a whole number from 1 to 100";
        let parse_quality = |raw: &str| raw.parse::<u8>().ok().filter(|q| (1..=100).contains(q));
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let positive = "a whole number of at least 1";
        let config = Config {
            input_prefixes,
            output_prefix,
            widths,
            webp: env.bool_or("WEBP_RENDITIONS", false)?,
            avif: env.bool_or("AVIF_RENDITIONS", false)?,
            jpeg_quality: env.parse_or("JPEG_QUALITY", 79, quality, parse_quality)?,
            webp_quality: env.parse_or("WEBP_QUALITY", 75, quality, parse_quality)?,
            avif_quality: env.parse_or("AVIF_QUALITY", 70, quality, parse_quality)?,
            avif_speed: env.parse_or(
                "AVIF_SPEED",
                8,
                "a whole number from 1 (slowest, smallest) to 10 (fastest)",
                |raw| raw.parse::<u8>().ok().filter(|s| (1..=10).contains(s)),
            )?,
            animate: env.parse_or(
                "ANIMATION",
                true,
                "animate (animated renditions) or first-frame",
                |raw| match raw {
                    "animate" => Some(true),
                    "first-frame" => Some(false),
                    _ => None,
                },
            )?,
            max_frames: env.parse_or("MAX_FRAMES", 300, positive, |raw| {
                raw.parse().ok().filter(|n| *n > 0)
            })?,
            max_animation_pixels: env.parse_or(
                "MAX_ANIMATION_PIXELS",
                200_000_000,
                "a number of pixels of at least 1",
                |raw| raw.parse().ok().filter(|n| *n > 0),
            )?,
            max_object_bytes: env.parse_or(
                "MAX_OBJECT_BYTES",
                50 * 1024 * 1024,
                "a number of bytes of at least 1",
                |raw| raw.parse().ok().filter(|n| *n > 0),
            )?,
            max_pixels: env.parse_or(
                "MAX_PIXELS",
                100_000_000,
                "a number of pixels of at least 1",
                |raw| raw.parse().ok().filter(|n| *n > 0),
            )?,
            task_table: env.required("TASK_TABLE", "the DynamoDB table of image tasks")?,
            task_ttl: env.duration_or("TASK_TTL", Duration::from_secs(14 * 24 * 3600))?,
            batch_concurrency: env.parse_or("BATCH_CONCURRENCY", 8, positive, parse_positive)?,
            image_concurrency: env.parse_or(
                "IMAGE_CONCURRENCY",
                cores,
                positive,
                parse_positive,
            )?,
            cache_control: env
                .get("CACHE_CONTROL")
                .unwrap_or_else(|| "public, max-age=31536000".to_owned()),
            deadline_margin: env.duration_or("DEADLINE_MARGIN", Duration::from_secs(1))?,
            metrics_namespace: env
                .get("METRICS_NAMESPACE")
                .unwrap_or_else(|| "OverseasOrigin".to_owned()),
        };
        Ok(config)
    }

    /// The largest rendition width.
    pub fn largest_width(&self) -> u32 {
        self.widths.last().copied().unwrap_or(DEFAULT_WIDTHS[3])
    }
}

/// Refuses prefixes that would make the processor trigger itself: renditions written under an
/// input prefix come back as new images, and an input under the output prefix is never read.
fn check_prefixes(inputs: &[String], output: &str) -> Result<(), ConfigError> {
    if inputs.is_empty() {
        return Err(error(
            "INPUT_PREFIXES",
            "is empty",
            "comma-separated key prefixes such as images/,uploads/",
        ));
    }
    if output.is_empty() || output.starts_with('/') {
        return Err(error(
            "OUTPUT_PREFIX",
            &format!("is {output:?}"),
            "a key prefix such as thumbnails/",
        ));
    }
    for input in inputs {
        if output.starts_with(input.as_str()) {
            return Err(error(
                "OUTPUT_PREFIX",
                &format!("is {output:?}, under the input prefix {input:?}, so renditions would be processed again"),
                "a prefix outside every input prefix",
            ));
        }
        if input.starts_with(output) {
            return Err(error(
                "INPUT_PREFIXES",
                &format!(
                    "has {input:?}, under the output prefix {output:?}, whose events are ignored"
                ),
                "prefixes outside the output prefix",
            ));
        }
    }
    Ok(())
}

fn parse_widths(raw: &str) -> Option<Vec<u32>> {
    let mut widths = shared::config::split_list(raw)
        .iter()
        .map(|w| {
            w.parse::<u32>()
                .ok()
                .filter(|w| (1..=MAX_WIDTH).contains(w))
        })
        .collect::<Option<Vec<u32>>>()?;
    widths.sort_unstable();
    widths.dedup();
    (!widths.is_empty()).then_some(widths)
}

fn parse_positive(raw: &str) -> Option<usize> {
    raw.parse().ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut all = vec![("TASK_TABLE", "image-tasks")];
        all.extend_from_slice(pairs);
        Config::from_env(&Env::from_pairs(all))
    }

    #[test]
    fn defaults() {
        let config = config(&[]).unwrap();
        assert_eq!(config.input_prefixes, ["images/"]);
        assert_eq!(config.output_prefix, "thumbnails/");
        assert_eq!(config.widths, DEFAULT_WIDTHS);
        assert!(!config.webp && !config.avif);
        assert_eq!(config.jpeg_quality, 79);
        assert_eq!((config.avif_quality, config.avif_speed), (70, 8));
        assert!(config.animate);
        assert_eq!(
            (config.max_frames, config.max_animation_pixels),
            (300, 200_000_000)
        );
        assert_eq!(config.task_table, "image-tasks");
        assert!(config.image_concurrency >= 1);
    }

    #[test]
    fn widths_are_sorted_and_checked() {
        let config = config(&[("RENDITION_WIDTHS", "640, 160,640,1280")]).unwrap();
        assert_eq!(config.widths, [160, 640, 1280]);
        for bad in ["0", "abc", "160,9000", ","] {
            let err = self::config(&[("RENDITION_WIDTHS", bad)]).unwrap_err();
            assert_eq!(err.variable, "RENDITION_WIDTHS", "{bad}");
        }
    }

    #[test]
    fn an_output_prefix_that_feeds_the_input_is_refused() {
        let err = config(&[
            ("INPUT_PREFIXES", "images/"),
            ("OUTPUT_PREFIX", "images/thumbs/"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "OUTPUT_PREFIX");
        assert!(err.problem.contains("processed again"), "{err}");
        let err = config(&[
            ("INPUT_PREFIXES", "uploads/,thumbnails/raw/"),
            ("OUTPUT_PREFIX", "thumbnails/"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "INPUT_PREFIXES");
        let err = config(&[("INPUT_PREFIXES", " , ")]).unwrap_err();
        assert_eq!(err.variable, "INPUT_PREFIXES");
        assert!(config(&[("INPUT_PREFIXES", "uploads/,images/")]).is_ok());
    }

    #[test]
    fn bad_numbers_name_their_variable() {
        for (name, value) in [
            ("JPEG_QUALITY", "0"),
            ("WEBP_QUALITY", "101"),
            ("MAX_PIXELS", "-1"),
            ("IMAGE_CONCURRENCY", "0"),
            ("TASK_TTL", "forever"),
            ("WEBP_RENDITIONS", "maybe"),
            ("AVIF_RENDITIONS", "sometimes"),
            ("AVIF_SPEED", "11"),
            ("ANIMATION", "loop"),
            ("MAX_FRAMES", "0"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name);
        }
        let err = Config::from_env(&Env::from_pairs([])).unwrap_err();
        assert_eq!(err.variable, "TASK_TABLE");
    }
}
