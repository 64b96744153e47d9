//! The image processor against the local stack: real uploads to moto's S3, its real S3 -> SQS
//! notifications, the Lambda handler on what the queue delivers, renditions decoded back.

mod common;

use aws_lambda_events::event::sqs::SqsMessage;
use common::fixtures::{self, Jpeg, Png, BASELINE};
use common::{a_minute, notified_keys, string_attr, Stack};
use image::ImageFormat;
use image_processor::rendition::fit;
use image_processor::store::{ObjectStore, Put, RenditionWrite, S3Store};
use image_processor::task::{Action, Ignored, Lease, Task};
use image_processor::tasks::{Claim, DynamoTaskTable, Finish, TaskTable};
use image_processor::Outcome;
use shared::ObjectKey;

const WIDTHS: [u32; 4] = [160, 320, 640, 1280];

/// Reads every rendition of `source` and checks its format, size, headers and picture.
async fn assert_renditions(
    stack: &Stack,
    source: &str,
    displayed: (u32, u32),
    extension: &str,
    quadrants: Option<fixtures::Quadrants>,
) {
    let expected_format = match extension {
        "jpg" => ImageFormat::Jpeg,
        "png" => ImageFormat::Png,
        "gif" => ImageFormat::Gif,
        _ => ImageFormat::WebP,
    };
    for width in WIDTHS {
        let key = format!("{}{source}/{width}.{extension}", stack.output_prefix());
        let output = stack
            .get(&key)
            .await
            .unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(
            output.content_type(),
            Some(expected_format.to_mime_type()),
            "{key}"
        );
        assert_eq!(
            output.cache_control(),
            Some("public, max-age=31536000"),
            "{key}"
        );
        let metadata = output.metadata().cloned().unwrap_or_default();
        assert!(metadata.contains_key("source-etag"), "{key}: {metadata:?}");
        let bytes = output.body.collect().await.unwrap().into_bytes();
        let (format, image) = fixtures::decode(&bytes);
        assert_eq!(format, expected_format, "{key}");
        assert_eq!(
            (image.width(), image.height()),
            fit(displayed, width),
            "{key}"
        );
        if expected_format == ImageFormat::Jpeg {
            assert!(!image.color().has_alpha());
        }
        if let Some(quadrants) = quadrants.filter(|_| image.width() >= 8 && image.height() >= 8) {
            fixtures::assert_quadrants(&image, quadrants, &key);
        }
    }
}

/// A source: name, bytes, displayed size, rendition extension, expected quadrants.
type Case = (
    &'static str,
    Vec<u8>,
    (u32, u32),
    &'static str,
    fixtures::Quadrants,
);

fn rendered(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Rendered { .. })
}

#[tokio::test]
async fn every_format_becomes_renditions() {
    let stack = Stack::new().await;
    let processor = stack.processor(&[("WEBP_RENDITIONS", "true")]);
    let input = stack.input_prefix();
    let gray: fixtures::Quadrants = [[230; 3], [20; 3], [30; 3], [240; 3]];
    let cases: Vec<Case> = vec![
        (
            "baseline photo.jpg",
            fixtures::jpeg(800, 600, BASELINE),
            (800, 600),
            "jpg",
            fixtures::UPRIGHT,
        ),
        (
            // Large enough for decoding at a reduced DCT scale (3000 -> 1500 for 1280).
            "progressive+1.JPEG",
            fixtures::jpeg(
                3000,
                2000,
                Jpeg {
                    progressive: true,
                    cmyk: false,
                    orientation: None,
                },
            ),
            (3000, 2000),
            "jpg",
            fixtures::UPRIGHT,
        ),
        (
            "cmyk.jpg",
            fixtures::jpeg(
                640,
                480,
                Jpeg {
                    progressive: false,
                    cmyk: true,
                    orientation: None,
                },
            ),
            (640, 480),
            "jpg",
            // The quadrants' inks printed on the press of the fallback CMYK profile (its colours
            // are compared with Little CMS in tests/colour.rs): duller than the screen's.
            [[211, 56, 54], [0, 129, 83], [67, 62, 128], [242, 202, 52]],
        ),
        (
            "rgb8 ü.png",
            fixtures::png(700, 500, Png::Rgb8),
            (700, 500),
            "jpg",
            fixtures::UPRIGHT,
        ),
        (
            "rgb16.png",
            fixtures::png(700, 500, Png::Rgb16),
            (700, 500),
            "jpg",
            fixtures::UPRIGHT,
        ),
        (
            "palette.png",
            fixtures::png(700, 500, Png::Palette),
            (700, 500),
            "jpg",
            fixtures::UPRIGHT,
        ),
        (
            "gray.png",
            fixtures::png(300, 200, Png::Gray),
            (300, 200),
            "jpg",
            gray,
        ),
        (
            "alpha.png",
            fixtures::png(700, 500, Png::Rgba8),
            (700, 500),
            "png",
            fixtures::UPRIGHT,
        ),
        (
            "lossy.webp",
            fixtures::webp(700, 500, false),
            (700, 500),
            "jpg",
            fixtures::UPRIGHT,
        ),
        (
            "alpha.webp",
            fixtures::webp(700, 500, true),
            (700, 500),
            "png",
            fixtures::UPRIGHT,
        ),
        (
            // Animated: GIF and animated WebP renditions (their first frame checked here; every
            // frame in tests/animation.rs).
            "two frames.gif",
            fixtures::gif(400, 300),
            (400, 300),
            "gif",
            fixtures::UPRIGHT,
        ),
        (
            "日本語の写真.jpg",
            fixtures::jpeg(500, 500, BASELINE),
            (500, 500),
            "jpg",
            fixtures::UPRIGHT,
        ),
    ];
    let objects: Vec<(String, Vec<u8>)> = cases
        .iter()
        .map(|(name, bytes, ..)| (format!("{input}{name}"), bytes.clone()))
        .collect();
    let records = stack.upload(&objects).await;
    let response = stack.invoke(&processor, records).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    for (name, _, displayed, extension, quadrants) in &cases {
        let source = format!("{input}{name}");
        assert_renditions(&stack, &source, *displayed, extension, Some(*quadrants)).await;
        assert_renditions(&stack, &source, *displayed, "webp", Some(*quadrants)).await;
        let record = stack.task_record(&source).await.expect("a task record");
        assert_eq!(string_attr(&record, "status"), "COMPLETED", "{source}");
        assert!(record.contains_key("expires_at"));
        assert!(!record.contains_key("lease_token"));
    }
    // The alpha renditions kept their transparency: bottom half is half transparent.
    let bytes = stack
        .get_bytes(&format!(
            "{}{input}alpha.png/320.png",
            stack.output_prefix()
        ))
        .await
        .unwrap();
    let (_, image) = fixtures::decode(&bytes);
    let rgba = image.to_rgba8();
    assert_eq!(rgba.get_pixel(10, 10).0[3], 255);
    assert!(rgba.get_pixel(10, rgba.height() - 10).0[3].abs_diff(128) <= 4);
}

#[tokio::test]
async fn exif_orientations_one_to_eight_are_applied() {
    let stack = Stack::new().await;
    let processor = stack.processor(&[]);
    let input = stack.input_prefix();
    let objects: Vec<(String, Vec<u8>)> = (1..=8u8)
        .map(|orientation| {
            let jpeg = fixtures::jpeg(
                640,
                320,
                Jpeg {
                    progressive: false,
                    cmyk: false,
                    orientation: Some(orientation),
                },
            );
            (format!("{input}orientation-{orientation}.jpg"), jpeg)
        })
        .collect();
    let records = stack.upload(&objects).await;
    let response = stack.invoke(&processor, records).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    for orientation in 1..=8u8 {
        let displayed = if orientation >= 5 {
            (320, 640)
        } else {
            (640, 320)
        };
        let source = format!("{input}orientation-{orientation}.jpg");
        assert_renditions(
            &stack,
            &source,
            displayed,
            "jpg",
            Some(fixtures::displayed_quadrants(orientation)),
        )
        .await;
    }
}

/// Orientation 1-8 from every container that carries one, XMP where there is no EXIF: each
/// container's sources as a browser (or Pillow, for XMP) shows them.
#[tokio::test]
async fn orientations_from_every_container_are_applied() {
    let stack = Stack::new().await;
    let processor = stack.processor(&[]);
    let input = stack.input_prefix();
    let (width, height) = (640, 320);
    let png = fixtures::png(width, height, Png::Rgb8);
    let webp = fixtures::webp(width, height, false);
    type Source = fn(u8) -> Vec<u8>;
    let containers: [(&str, Source); 5] = [
        ("webp-exif", |n| {
            let webp = fixtures::webp(640, 320, false);
            fixtures::webp_with_chunk(&webp, 640, 320, b"EXIF", &fixtures::tiff_orientation(n))
        }),
        ("png-exif", |n| {
            let png = fixtures::png(640, 320, Png::Rgb8);
            fixtures::png_with_chunk(&png, b"eXIf", &fixtures::tiff_orientation(n))
        }),
        ("png-xmp", |n| {
            let png = fixtures::png(640, 320, Png::Rgb8);
            let itxt = fixtures::png_xmp_itxt(&fixtures::xmp_orientation(n, false));
            fixtures::png_with_chunk(&png, b"iTXt", &itxt)
        }),
        ("jpeg-xmp", |n| {
            fixtures::jpeg_with_xmp(640, 320, &fixtures::xmp_orientation(n, true))
        }),
        ("webp-xmp", |n| {
            let webp = fixtures::webp(640, 320, false);
            fixtures::webp_with_chunk(
                &webp,
                640,
                320,
                b"XMP ",
                &fixtures::xmp_orientation(n, false),
            )
        }),
    ];
    let name = |container: &str, n: u8| {
        let extension = &container[..container.find('-').unwrap()];
        format!("{input}{container}-{n}.{extension}")
    };
    let mut objects = Vec::new();
    for (container, make) in &containers {
        for n in 1..=8u8 {
            objects.push((name(container, n), make(n)));
        }
    }
    // The same bytes without the metadata render upright (the chunks are what turns them).
    objects.push((format!("{input}plain.png"), png));
    objects.push((format!("{input}plain.webp"), webp));
    let records = stack.upload(&objects).await;
    let response = stack.invoke(&processor, records).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    for (container, _) in &containers {
        for n in 1..=8u8 {
            let displayed = if n >= 5 {
                (height, width)
            } else {
                (width, height)
            };
            let quadrants = fixtures::displayed_quadrants(n);
            assert_renditions(
                &stack,
                &name(container, n),
                displayed,
                "jpg",
                Some(quadrants),
            )
            .await;
        }
    }
    for plain in ["plain.png", "plain.webp"] {
        let source = format!("{input}{plain}");
        assert_renditions(
            &stack,
            &source,
            (width, height),
            "jpg",
            Some(fixtures::UPRIGHT),
        )
        .await;
    }
}

#[tokio::test]
async fn tiny_and_panoramic_images() {
    let stack = Stack::new().await;
    let processor = stack.processor(&[]);
    let input = stack.input_prefix();
    let objects = vec![
        (
            format!("{input}one pixel.jpg"),
            fixtures::jpeg(1, 1, BASELINE),
        ),
        (
            format!("{input}one pixel.png"),
            fixtures::png(1, 1, Png::Rgba8),
        ),
        (
            format!("{input}panorama.jpg"),
            fixtures::jpeg(6000, 60, BASELINE),
        ),
    ];
    let records = stack.upload(&objects).await;
    let response = stack.invoke(&processor, records).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_renditions(&stack, &objects[0].0, (1, 1), "jpg", None).await;
    assert_renditions(&stack, &objects[1].0, (1, 1), "png", None).await;
    assert_renditions(&stack, &objects[2].0, (6000, 60), "jpg", None).await;
    // 6000x60 at 160 wide is 160x2: still a picture.
    assert_eq!(fit((6000, 60), 160), (160, 2));
}

#[tokio::test]
async fn bad_inputs_fail_permanently_once_and_are_recorded() {
    let stack = Stack::new().await;
    let processor = stack.processor(&[("MAX_PIXELS", "50000000")]);
    let input = stack.input_prefix();
    let cases = [
        (
            "bomb.jpg",
            fixtures::jpeg_bomb(60_000, 60_000),
            "too_many_pixels",
        ),
        (
            "bomb.png",
            fixtures::png_bomb(100_000, 100_000),
            "too_many_pixels",
        ),
        (
            "truncated.jpg",
            fixtures::truncated(fixtures::jpeg(512, 512, BASELINE)),
            "corrupt_image",
        ),
        (
            "truncated.png",
            fixtures::truncated(fixtures::png(512, 512, Png::Rgb8)),
            "corrupt_image",
        ),
        ("corrupt.jpg", fixtures::corrupt_jpeg(), "corrupt_image"),
        (
            "not an image.jpg",
            b"hello, I am text\n".to_vec(),
            "not_an_image",
        ),
    ];
    let objects: Vec<(String, Vec<u8>)> = cases
        .iter()
        .map(|(name, bytes, _)| (format!("{input}{name}"), bytes.clone()))
        .collect();
    let records = stack.upload(&objects).await;
    for record in &records {
        let err = processor
            .process_message(record, common::context().deadline)
            .await
            .unwrap_err();
        let key = &notified_keys(record.body.as_deref().unwrap())[0];
        let (_, _, reason) = cases.iter().find(|(name, ..)| key.ends_with(name)).unwrap();
        assert_eq!(shared::Failure::reason(&err), *reason, "{key}: {err}");
        assert!(!shared::Failure::is_retryable(&err), "{key}");
    }
    // Delivered again (at least once): recorded as failed, not tried again, not reported.
    let response = stack.invoke(&processor, records.clone()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    for record in &records {
        let outcomes = processor
            .process_message(record, common::context().deadline)
            .await
            .unwrap();
        assert!(
            matches!(outcomes[..], [Outcome::AlreadyFailed { .. }]),
            "{outcomes:?}"
        );
    }
    for (key, _) in &objects {
        let record = stack.task_record(key).await.expect("a task record");
        assert_eq!(string_attr(&record, "status"), "FAILED", "{key}");
        let (_, _, reason) = cases.iter().find(|(name, ..)| key.ends_with(name)).unwrap();
        assert_eq!(string_attr(&record, "reason"), *reason, "{key}");
        assert!(!string_attr(&record, "detail").is_empty());
    }
    assert!(stack.keys_under(&stack.output_prefix()).await.is_empty());
}

#[tokio::test]
async fn a_task_is_processed_once_however_often_and_concurrently_delivered() {
    let stack = Stack::new().await;
    let processor = stack.processor(&[]);
    let input = stack.input_prefix();
    let objects = vec![
        (
            format!("{input}twice.jpg"),
            fixtures::jpeg(400, 300, BASELINE),
        ),
        (
            format!("{input}concurrent.jpg"),
            fixtures::jpeg(400, 300, BASELINE),
        ),
    ];
    let records = stack.upload(&objects).await;
    let deadline = common::context().deadline;
    let first = processor
        .process_message(&records[0], deadline)
        .await
        .unwrap();
    assert!(rendered(&first[0]), "{first:?}");
    let again = processor
        .process_message(&records[0], deadline)
        .await
        .unwrap();
    assert_eq!(again, [Outcome::AlreadyCompleted]);

    let (a, b) = tokio::join!(
        processor.process_message(&records[1], deadline),
        processor.process_message(&records[1], deadline)
    );
    let results = [a, b];
    let rendered_count = results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|o| rendered(&o[0])))
        .count();
    assert_eq!(rendered_count, 1, "{results:?}");
    let other = results
        .iter()
        .find(|r| !r.as_ref().is_ok_and(|o| rendered(&o[0])))
        .unwrap();
    match other {
        Ok(outcomes) => assert_eq!(outcomes[..], [Outcome::AlreadyCompleted]),
        Err(err) => {
            // The loser found the winner's live lease: it is retried later, with a delay.
            assert_eq!(shared::Failure::reason(err), "task_in_progress");
            assert!(shared::Failure::retry_after(err).is_some());
        }
    }
    // Through the handler, a busy task is a batch item failure and a completed one is not.
    let response = stack.invoke(&processor, records).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
}

#[tokio::test]
async fn own_output_and_test_events_are_dropped() {
    let stack = Stack::new().await;
    let processor = stack.processor(&[("RENDITION_WIDTHS", "160,320")]);
    let input = stack.input_prefix();
    let records = stack
        .upload(&[(
            format!("{input}loop.jpg"),
            fixtures::jpeg(400, 300, BASELINE),
        )])
        .await;
    let response = stack.invoke(&processor, records).await;
    assert!(response.batch_item_failures.is_empty());
    // The bucket notifies the queue of the renditions too: they must not be processed.
    let output = stack.output_prefix();
    let echoes = stack.notifications(2, |key| key.starts_with(&output)).await;
    for record in &echoes {
        let outcomes = processor
            .process_message(record, common::context().deadline)
            .await
            .unwrap();
        assert_eq!(outcomes, [Outcome::Ignored(Ignored::OutputPrefix)]);
    }
    let response = stack.invoke(&processor, echoes).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(stack.keys_under(&output).await.len(), 2);

    // What S3 sends when notifications are switched on.
    stack
        .sqs
        .send_message()
        .queue_url(&stack.queue_url)
        .message_body(format!(
            r#"{{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-01-01T00:00:00.000Z","Bucket":"{}","RequestId":"R","HostId":"H"}}"#,
            stack.bucket
        ))
        .send()
        .await
        .unwrap();
    let test_events = stack
        .messages(1, |body| body.contains("s3:TestEvent"))
        .await;
    let outcomes = processor
        .process_message(&test_events[0], common::context().deadline)
        .await
        .unwrap();
    assert_eq!(outcomes, [Outcome::TestEvent]);
    let response = stack.invoke(&processor, test_events).await;
    assert!(response.batch_item_failures.is_empty());
}

#[tokio::test]
async fn task_table_leases() {
    let stack = Stack::new().await;
    let table = DynamoTaskTable::new(
        stack.dynamodb.clone(),
        &stack.table,
        std::time::Duration::from_secs(3600),
    );
    let task = Task {
        id: format!("{}/{}lease.jpg|etag|-", stack.bucket, stack.root),
        action: Action::Render,
        bucket: stack.bucket.clone(),
        key: ObjectKey::new(format!("{}lease.jpg", stack.root)).unwrap(),
        size: None,
        etag: Some("etag".into()),
        version_id: None,
        sequencer: None,
        event_time: None,
    };
    let now = 1_900_000_000_000;
    let Claim::Claimed { token } = table
        .claim(
            &task,
            Lease {
                until_ms: now + 1000,
            },
            now,
            a_minute(),
        )
        .await
        .unwrap()
    else {
        panic!("first claim");
    };
    // Live lease: busy until it ends.
    assert_eq!(
        table
            .claim(
                &task,
                Lease {
                    until_ms: now + 5000
                },
                now + 500,
                a_minute()
            )
            .await
            .unwrap(),
        Claim::Busy {
            until_ms: now + 1000
        }
    );
    // Lease over (the invocation died): taken over with a new token; the old one is refused.
    let Claim::Claimed { token: second } = table
        .claim(
            &task,
            Lease {
                until_ms: now + 9000,
            },
            now + 2000,
            a_minute(),
        )
        .await
        .unwrap()
    else {
        panic!("takeover");
    };
    assert_ne!(token, second);
    let done = Finish::Completed { renditions: 4 };
    assert!(!table
        .finish(&task.id, &token, &done, now / 1000 + 60, a_minute())
        .await
        .unwrap());
    // Released by its holder: claimable at once.
    table.release(&task.id, &second, a_minute()).await.unwrap();
    let Claim::Claimed { token: third } = table
        .claim(
            &task,
            Lease {
                until_ms: now + 9000,
            },
            now + 2100,
            a_minute(),
        )
        .await
        .unwrap()
    else {
        panic!("claim after release");
    };
    assert!(table
        .finish(&task.id, &third, &done, now / 1000 + 60, a_minute())
        .await
        .unwrap());
    assert_eq!(
        table
            .claim(
                &task,
                Lease {
                    until_ms: now + 9000
                },
                now + 3000,
                a_minute()
            )
            .await
            .unwrap(),
        Claim::Completed
    );
    // Past its TTL the record no longer counts, even before DynamoDB deletes it.
    assert!(matches!(
        table
            .claim(
                &task,
                Lease {
                    until_ms: now + 200_000
                },
                now + 120_000,
                a_minute()
            )
            .await
            .unwrap(),
        Claim::Claimed { .. }
    ));
}

#[tokio::test]
async fn overwritten_sources_and_older_renditions() {
    let stack = Stack::new().await;
    let processor = stack.processor(&[("RENDITION_WIDTHS", "160")]);
    let input = stack.input_prefix();
    let key = format!("{input}rewritten.jpg");
    let old = stack
        .upload(&[(key.clone(), fixtures::jpeg(300, 200, BASELINE))])
        .await;
    let new = stack
        .upload(&[(key.clone(), fixtures::jpeg(200, 300, BASELINE))])
        .await;
    // The first event names a revision that is gone: nothing to render from it.
    let outcomes = processor
        .process_message(&old[0], common::context().deadline)
        .await
        .unwrap();
    assert_eq!(outcomes, [Outcome::SourceGone]);
    let outcomes = processor
        .process_message(&new[0], common::context().deadline)
        .await
        .unwrap();
    assert!(rendered(&outcomes[0]));
    let rendition = format!("{}{key}/160.jpg", stack.output_prefix());
    let (_, image) = fixtures::decode(&stack.get_bytes(&rendition).await.unwrap());
    assert_eq!((image.width(), image.height()), (160, 240));
    stack.invoke(&processor, [old, new].concat()).await;

    // A rendition from an older write (smaller sequencer) is replaced; from a newer one, kept.
    let store = S3Store::new(stack.s3.clone());
    let write = |body: &'static [u8], sequencer: &str| RenditionWrite {
        bucket: stack.bucket.clone(),
        key: ObjectKey::new(format!("{}{}seq.jpg/160.jpg", stack.output_prefix(), input)).unwrap(),
        body: bytes::Bytes::from_static(body),
        content_type: "image/jpeg",
        cache_control: "no-cache".into(),
        stamp: image_processor::rendition::SourceStamp {
            key: format!("{input}seq.jpg"),
            etag: Some(format!("etag-{sequencer}")),
            version_id: None,
            sequencer: Some(sequencer.into()),
        },
    };
    assert_eq!(
        store
            .put_if_absent(&write(b"first", "0010"), a_minute())
            .await
            .unwrap(),
        Put::Created
    );
    assert_eq!(
        store
            .put_if_absent(&write(b"second", "0020"), a_minute())
            .await
            .unwrap(),
        Put::Exists
    );
    let existing = store
        .existing(&stack.bucket, &write(b"", "0").key, a_minute())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(existing.stamp.sequencer.as_deref(), Some("0010"));
    assert_eq!(existing.stamp.key, format!("{input}seq.jpg"));
    assert_eq!(
        store
            .replace(&write(b"second", "0020"), "\"not-the-etag\"", a_minute())
            .await
            .unwrap(),
        Put::Exists
    );
    assert_eq!(
        store
            .replace(&write(b"second", "0020"), &existing.etag, a_minute())
            .await
            .unwrap(),
        Put::Created
    );
    assert_eq!(
        stack.get_bytes(write(b"", "0").key.as_str()).await.unwrap(),
        b"second"
    );
}

/// Sequencers of one key's events, in the order S3 would give them.
const SEQUENCERS: [&str; 3] = [
    "0055AED6DCD90281E5",
    "0055AED6DCD90281E6",
    "0055AED6DCD90281E601",
];

/// The events as moto sends them (no sequencer: the processor orders a rendition and its source
/// by reading the source), or with the sequencers S3 sends (ordered by them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Events {
    Moto,
    WithSequencers,
}

impl Events {
    fn nth(self, record: &SqsMessage, n: usize) -> SqsMessage {
        match self {
            Events::Moto => record.clone(),
            Events::WithSequencers => common::as_s3_sends(record, SEQUENCERS[n]),
        }
    }
}

/// The size of the one 160-wide rendition of `source`, and the source ETag it says it was made
/// from; `None` when there is none.
async fn rendition_160(stack: &Stack, source: &str) -> Option<((u32, u32), String)> {
    let key = format!("{}{source}/160.jpg", stack.output_prefix());
    let output = stack.get(&key).await?;
    let etag = output
        .metadata()
        .and_then(|m| m.get("source-etag"))
        .cloned()
        .unwrap_or_default();
    let bytes = output.body.collect().await.unwrap().into_bytes();
    let (_, image) = fixtures::decode(&bytes);
    fixtures::assert_quadrants(&image, fixtures::UPRIGHT, &key);
    Some(((image.width(), image.height()), etag))
}

async fn a_replaced_source_gets_renditions_from_its_new_bytes(events: Events) {
    let stack = Stack::new().await;
    let processor = stack.processor(&[("RENDITION_WIDTHS", "160")]);
    let key = format!("{}replaced {events:?}.jpg", stack.input_prefix());
    let first = stack
        .upload(&[(key.clone(), fixtures::jpeg(300, 200, BASELINE))])
        .await;
    let first = events.nth(&first[0], 0);
    let outcome = processor
        .process_message(&first, common::context().deadline)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        [Outcome::Rendered {
            renditions: 1,
            written: 1
        }]
    );
    let old_etag = stack.get(&key).await.unwrap().e_tag.unwrap();
    assert_eq!(
        rendition_160(&stack, &key).await,
        Some(((160, 107), old_etag.trim_matches('"').to_owned()))
    );

    // Replaced as the backfill refreshes a copy: conditional on the ETag it checked.
    let new_etag = stack
        .replace(&key, fixtures::jpeg(200, 300, BASELINE), &old_etag)
        .await;
    let second = stack.notifications(1, |k| k == key).await;
    let second = events.nth(&second[0], 1);
    let outcome = processor
        .process_message(&second, common::context().deadline)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        [Outcome::Rendered {
            renditions: 1,
            written: 1
        }],
        "the older write's rendition is replaced"
    );
    assert_eq!(
        rendition_160(&stack, &key).await,
        Some(((160, 240), new_etag.trim_matches('"').to_owned()))
    );
    // The first write's event again: done once, and its revision is gone anyway.
    let outcome = processor
        .process_message(&first, common::context().deadline)
        .await
        .unwrap();
    assert_eq!(outcome, [Outcome::AlreadyCompleted]);
    assert_eq!(
        rendition_160(&stack, &key).await.unwrap().0,
        (160, 240),
        "not overwritten by the older write"
    );
    stack.invoke(&processor, vec![first, second]).await;
}

#[tokio::test]
async fn a_replaced_source_gets_new_renditions_with_motos_events() {
    a_replaced_source_gets_renditions_from_its_new_bytes(Events::Moto).await;
}

#[tokio::test]
async fn a_replaced_source_gets_new_renditions_with_sequencers() {
    a_replaced_source_gets_renditions_from_its_new_bytes(Events::WithSequencers).await;
}

async fn a_deleted_source_loses_its_renditions(events: Events) {
    let stack = Stack::new().await;
    let (processor, metrics) =
        stack.processor_counted(&[("RENDITION_WIDTHS", "160,320"), ("WEBP_RENDITIONS", "true")]);
    let output = stack.output_prefix();
    let key = format!("{}taken down/café+1 {events:?}.png", stack.input_prefix());
    // A source whose key continues past the other's: its renditions are not the other's.
    let nested = format!("{key}/inner.png");
    let created = stack
        .upload(&[
            (key.clone(), fixtures::png(400, 300, Png::Rgb8)),
            (nested.clone(), fixtures::png(400, 300, Png::Rgb8)),
        ])
        .await;
    let created: Vec<SqsMessage> = created.iter().map(|r| events.nth(r, 0)).collect();
    let response = stack.invoke(&processor, created.clone()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let nested_renditions = format!("{output}{nested}/");
    let own_renditions = || async {
        let mut keys = stack.keys_under(&format!("{output}{key}/")).await;
        keys.retain(|k| !k.starts_with(&nested_renditions));
        keys
    };
    assert_eq!(own_renditions().await.len(), 4);

    stack.delete_object(&key).await;
    let removal = stack.removal(&key).await;
    // What moto sends for a DeleteObject: ObjectRemoved:Delete, the key form-encoded, the deleted
    // object's size and ETag, and no sequencer (S3 sends the sequencer, and neither size nor ETag).
    let body: serde_json::Value = serde_json::from_str(removal.body.as_deref().unwrap()).unwrap();
    let record = &body["Records"][0];
    assert_eq!(record["eventName"], "ObjectRemoved:Delete");
    let object = record["s3"]["object"].as_object().unwrap();
    assert!(!object.contains_key("sequencer"), "{object:?}");
    assert!(!object.contains_key("versionId"), "{object:?}");
    assert!(
        object.contains_key("eTag") && object.contains_key("size"),
        "{object:?}"
    );
    assert!(
        object["key"]
            .as_str()
            .unwrap()
            .ends_with(&format!("taken+down%2Fcaf%C3%A9%2B1+{events:?}.png")),
        "{object:?}"
    );
    let removal = events.nth(&removal, 1);

    let outcome = processor
        .process_message(&removal, common::context().deadline)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        [Outcome::Removed {
            deleted: 4,
            kept: 0
        }]
    );
    assert_eq!(metrics.total("RenditionsDeleted"), 4.0);
    assert_eq!(own_renditions().await, [] as [String; 0]);
    // The nested source's renditions, further down the prefix, are untouched.
    assert_eq!(stack.keys_under(&nested_renditions).await.len(), 4);
    let record = stack
        .task_records(&key)
        .await
        .into_iter()
        .find(|r| string_attr(r, "id").contains("|removed:"))
        .expect("the removal's task record");
    assert_eq!(string_attr(&record, "status"), "COMPLETED");
    assert_eq!(
        record.get("renditions_deleted").and_then(|v| v.as_n().ok()),
        Some(&"4".to_owned())
    );

    // Delivered again: done once.
    let outcome = processor
        .process_message(&removal, common::context().deadline)
        .await
        .unwrap();
    assert_eq!(outcome, [Outcome::AlreadyCompleted]);
    let response = stack.invoke(&processor, vec![removal]).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    // The renditions' own removals come back when the bucket notifies on every key: ignored.
    let echoes = stack
        .messages(4, |body| {
            body.contains("\"ObjectRemoved:")
                && notified_keys(body).iter().any(|k| {
                    k.starts_with(&format!("{output}{key}/")) && !k.starts_with(&nested_renditions)
                })
        })
        .await;
    for echo in &echoes {
        let outcome = processor
            .process_message(echo, common::context().deadline)
            .await
            .unwrap();
        assert_eq!(outcome, [Outcome::Ignored(Ignored::OutputPrefix)]);
    }
    stack.invoke(&processor, echoes).await;
}

#[tokio::test]
async fn a_deleted_source_loses_its_renditions_with_motos_events() {
    a_deleted_source_loses_its_renditions(Events::Moto).await;
}

#[tokio::test]
async fn a_deleted_source_loses_its_renditions_with_sequencers() {
    a_deleted_source_loses_its_renditions(Events::WithSequencers).await;
}

/// Created, deleted, created again; the events handled out of order. The first creation renders
/// nothing (its revision is gone), the late removal leaves the second creation's renditions.
async fn late_events_never_undo_a_newer_write(events: Events) {
    let stack = Stack::new().await;
    let processor = stack.processor(&[("RENDITION_WIDTHS", "160")]);
    let key = format!("{}late {events:?}.jpg", stack.input_prefix());
    let first = stack
        .upload(&[(key.clone(), fixtures::jpeg(300, 200, BASELINE))])
        .await;
    stack.delete_object(&key).await;
    let removal = stack.removal(&key).await;
    let again = stack
        .upload(&[(key.clone(), fixtures::jpeg(200, 300, BASELINE))])
        .await;
    let (first, removal, again) = (
        events.nth(&first[0], 0),
        events.nth(&removal, 1),
        events.nth(&again[0], 2),
    );
    let deadline = common::context().deadline;
    assert_eq!(
        processor.process_message(&again, deadline).await.unwrap(),
        [Outcome::Rendered {
            renditions: 1,
            written: 1
        }]
    );
    // The late removal: the rendition was made from a newer write.
    assert_eq!(
        processor.process_message(&removal, deadline).await.unwrap(),
        [Outcome::Removed {
            deleted: 0,
            kept: 1
        }]
    );
    // The late first creation: its revision is gone, nothing rendered, nothing overwritten.
    assert_eq!(
        processor.process_message(&first, deadline).await.unwrap(),
        [Outcome::SourceGone]
    );
    assert_eq!(rendition_160(&stack, &key).await.unwrap().0, (160, 240));
    stack.invoke(&processor, vec![first, removal, again]).await;
}

#[tokio::test]
async fn late_events_never_undo_a_newer_write_with_motos_events() {
    late_events_never_undo_a_newer_write(Events::Moto).await;
}

#[tokio::test]
async fn late_events_never_undo_a_newer_write_with_sequencers() {
    late_events_never_undo_a_newer_write(Events::WithSequencers).await;
}

/// Created and deleted before either event is handled, the removal first: a creation handled
/// after its removal writes nothing.
#[tokio::test]
async fn a_creation_handled_after_its_removal_writes_nothing() {
    let stack = Stack::new().await;
    let processor = stack.processor(&[("RENDITION_WIDTHS", "160")]);
    let key = format!("{}gone before.jpg", stack.input_prefix());
    let created = stack
        .upload(&[(key.clone(), fixtures::jpeg(300, 200, BASELINE))])
        .await;
    stack.delete_object(&key).await;
    let removal = stack.removal(&key).await;
    let deadline = common::context().deadline;
    assert_eq!(
        processor.process_message(&removal, deadline).await.unwrap(),
        [Outcome::Removed {
            deleted: 0,
            kept: 0
        }]
    );
    assert_eq!(
        processor
            .process_message(&created[0], deadline)
            .await
            .unwrap(),
        [Outcome::SourceGone]
    );
    assert!(stack.keys_under(&stack.output_prefix()).await.is_empty());
    stack
        .invoke(&processor, vec![created[0].clone(), removal])
        .await;
}
