//! The demo scenario: plays what a viewer abroad would do and reports what each part did, checking
//! it as it goes (the demo fails when the pipeline does not do what it should).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::edge::{EdgeStats, SERVED_BY, VIEWER_COUNTRY};
use crate::esm::Deliveries;
use crate::metrics::{self, FunctionLog};
use crate::origin::Hits;

pub struct Scenario {
    pub edge: String,
    pub catalogue: PathBuf,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub thumbnail_prefix: String,
    pub origin_hits: Hits,
    pub backfill: Deliveries,
    /// The part queue's deliveries (part tasks of split copies, restarts).
    pub parts: Deliveries,
    pub images: Deliveries,
    pub backfill_log: PathBuf,
    pub edge_stats: EdgeStats,
    pub burst: usize,
    /// The edge sandboxes' logs, searched for viewer secrets.
    pub edge_logs: Vec<PathBuf>,
    /// The hook is wired as origin-response: it enqueues only what the origin answered 2xx.
    pub origin_response: bool,
    pub sqs: aws_sdk_sqs::Client,
    /// Where the domestic side announces changes (the backfill queue).
    pub backfill_queue: String,
    pub origin_port: u16,
    /// The invalidation queue's deliveries.
    pub invalidations: Deliveries,
    /// The first regional stack's region (the bucket's).
    pub region: String,
    /// The second regional stack, when the demo runs two.
    pub second_region: Option<RegionalStack>,
    /// How to read the per-region status at the end of the two-region step, if at all.
    pub status: Option<StatusTools>,
}

/// `backfill-ctl status` per region, over metrics filed by the EMF stand-in ([`crate::metrics`]).
pub struct StatusTools {
    pub backfill_ctl: PathBuf,
    /// The local stack's CloudWatch configuration (the region is set per call).
    pub cloudwatch: aws_sdk_cloudwatch::config::Builder,
}

/// One regional stack, as the two-region step sees it.
pub struct RegionalStack {
    pub region: String,
    pub bucket: String,
    /// A client that signs for the stack's region.
    pub s3: aws_sdk_s3::Client,
    pub backfill: Deliveries,
    pub images: Deliveries,
    pub backfill_log: PathBuf,
}

/// The two-region step's viewers: one country per stack (the viewer function sends each to its
/// nearest stack), the objects both ask for, and one only each asks for.
const COUNTRIES: [&str; 2] = ["US", "DE"];
const ASKED_BY_BOTH: [&str; 2] = ["images/photo-small.jpg", "images/logo.png"];
const ASKED_BY_ONE: [&str; 2] = ["images/badge.gif", "images/banner.webp"];

struct Fetched {
    status: u16,
    /// Who served it: `s3`, `domestic`, `cache`, `edge` or `function`.
    served_by: String,
    /// The whole `x-served-by`, with the bucket's region (`s3:eu-central-1`).
    origin: String,
    body: Vec<u8>,
    elapsed: Duration,
}

const VIEWER_COOKIE: &str = "session=viewer-secret-cookie-4711";
const VIEWER_AUTHORIZATION: &str = "Bearer viewer-secret-token-0815";

const WAIT: Duration = Duration::from_secs(90);

impl Scenario {
    pub async fn play(&self) -> Result<()> {
        let client = reqwest::Client::new();
        let mut failures = Vec::new();
        let mut check = |ok: bool, what: String| {
            println!("   {} {what}", if ok { "ok  " } else { "FAIL" });
            if !ok {
                failures.push(what);
            }
        };

        let image = "images/photo-large.jpg";
        println!("\n1. First request for an object the overseas bucket does not have");
        // The viewer sends credentials: they must not show up in the hook's logs or messages.
        let first = self
            .get_with(
                &client,
                image,
                &[
                    ("cookie", VIEWER_COOKIE),
                    ("authorization", VIEWER_AUTHORIZATION),
                ],
            )
            .await?;
        println!(
            "   GET /{image} -> {} from {} ({} bytes, {} ms)",
            first.status,
            first.served_by,
            first.body.len(),
            first.elapsed.as_millis()
        );
        check(
            first.status == 200 && first.served_by == "domestic",
            "served by the domestic origin".into(),
        );

        println!("\n2. The edge hook enqueued a backfill; the backfill function copied the object");
        let started = Instant::now();
        let stored = self.wait_for_object(image).await?;
        let copied = self.wait_for_outcome(image).await?;
        println!(
            "   {image}: {} bytes in the bucket {} ms after the first response; outcomes {}",
            stored.len(),
            started.elapsed().as_millis(),
            format_outcomes(&copied)
        );
        check(
            stored == first.body,
            "the copy is byte-identical to the origin's".into(),
        );
        check(copied.get("copied") == Some(&1), "copied once".into());
        // What the first region's backfill copied, for its figures in the status at the end.
        let mut copied_bytes = stored.len() as u64;

        println!("\n3. Second request: now served by the overseas bucket");
        let second = self.get(&client, image).await?;
        println!(
            "   GET /{image} -> {} from {} ({} ms)",
            second.status,
            second.served_by,
            second.elapsed.as_millis()
        );
        check(
            second.status == 200 && second.served_by == "s3",
            "served by S3".into(),
        );
        check(second.body == first.body, "same bytes".into());

        println!("\n4. The image processor made thumbnails");
        let thumbnails = self.wait_for_thumbnails(image).await?;
        for (key, (width, height)) in &thumbnails {
            println!("   {key}: {width}x{height}");
        }
        check(
            thumbnails.len() >= 4,
            format!("{} renditions", thumbnails.len()),
        );
        check(
            thumbnails
                .iter()
                .all(|(_, (w, h))| *w <= 1280 && (*w as f64 / *h as f64 - 1.5).abs() < 0.02),
            "no upscaling, aspect kept".into(),
        );

        println!("\n5. A request for an object the domestic origin does not have either");
        let missing = "images/no-such-photo.jpg";
        let answer = self.get(&client, missing).await?;
        println!(
            "   GET /{missing} -> {} from {}",
            answer.status, answer.served_by
        );
        check(
            answer.status == 404,
            "the viewer gets the origin's 404".into(),
        );
        if self.origin_response {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let delivered = self.backfill.records_for(missing);
            println!("   backfill messages for it: {delivered}");
            check(
                delivered == 0,
                "the origin-response hook saw the 404 and enqueued nothing".into(),
            );
        } else {
            let outcomes = self.wait_for_outcome(missing).await?;
            println!("   backfill outcomes {}", format_outcomes(&outcomes));
            check(
                outcomes.get("not_at_origin") == Some(&1),
                "ended as \"not at origin\", not retried".into(),
            );
        }
        check(
            self.object(missing).await?.is_none(),
            "nothing written".into(),
        );

        println!(
            "\n6. A burst: {} viewers miss the same video at once",
            self.burst
        );
        let video = "video/clip.mp4";
        let expected = std::fs::read(self.catalogue.join(video))?;
        let requests = (0..self.burst).map(|_| self.get(&client, video));
        let answers = futures::future::try_join_all(requests).await?;
        let by_origin = answers
            .iter()
            .fold(HashMap::new(), |mut map: HashMap<&str, usize>, a| {
                *map.entry(a.served_by.as_str()).or_default() += 1;
                map
            });
        println!("   {} responses: {by_origin:?}", answers.len());
        check(
            answers
                .iter()
                .all(|a| a.status == 200 && a.body == expected),
            "every viewer got the whole video".into(),
        );
        let stored = self.wait_for_object(video).await?;
        copied_bytes += stored.len() as u64;
        let outcomes = self.wait_for_settled(video).await?;
        let delivered = self.backfill.records_for(video);
        let path = format!("/{video}");
        let fetched = self.origin_hits.backfill_bodies(&path);
        println!(
            "   hook: {delivered} backfill messages for {} misses (repeats suppressed within each sandbox); {} part tasks",
            self.burst,
            self.parts.records_for(video)
        );
        println!(
            "   the domestic origin answered {} requests for the video: {} from viewers",
            self.origin_hits.get(&path),
            self.origin_hits.get(&path) - self.origin_hits.backfill_requests(&path)
        );
        println!(
            "   the backfill fetched the video's body {fetched} time(s) from the domestic origin"
        );
        println!("   backfill outcomes {}", format_outcomes(&outcomes));
        // One lease per key: the first message copies, the others find the copy in flight (or
        // the object present) and fetch nothing.
        check(
            fetched == 1,
            format!("the backfill fetched the video's body once ({fetched})"),
        );
        check(
            one_copy(&outcomes),
            "one object: every message copied it, found it present or found its copy in flight"
                .into(),
        );
        check(
            Sha256::digest(&stored) == Sha256::digest(&expected),
            format!(
                "the bucket holds the whole video ({} bytes, SHA-256 identical)",
                stored.len()
            ),
        );

        let leaked = *self.edge_stats.config_headers_leaked.lock().unwrap();
        if self.origin_response {
            // Only an origin-request trigger can take headers off the request before it is sent.
            println!("\n7. The configuration headers at the domestic origin");
            println!(
                "   {} (an origin-response trigger runs after the request went out, so it cannot strip them)",
                if leaked { "sent" } else { "not sent" }
            );
        } else {
            println!("\n7. The configuration headers never reached the domestic origin");
            check(!leaked, "no x-backfill-* header at the origin".into());
        }

        println!("\n8. Viewer credentials stay out of the edge logs and the backfill messages");
        let mut seen_in = Vec::new();
        for path in &self.edge_logs {
            let text = tokio::fs::read_to_string(path).await.unwrap_or_default();
            if text.contains(VIEWER_COOKIE) || text.contains(VIEWER_AUTHORIZATION) {
                seen_in.push(path.display().to_string());
            }
        }
        let bodies = self.backfill.bodies();
        if bodies
            .iter()
            .any(|b| b.contains(VIEWER_COOKIE) || b.contains(VIEWER_AUTHORIZATION))
        {
            seen_in.push("a backfill message".into());
        }
        println!(
            "   searched {} edge logs and {} messages",
            self.edge_logs.len(),
            bodies.len()
        );
        check(
            seen_in.is_empty(),
            format!(
                "no cookie or authorization found{}",
                if seen_in.is_empty() {
                    String::new()
                } else {
                    format!(" (found in {})", seen_in.join(", "))
                }
            ),
        );

        println!("\n9. The newsroom replaces the photo at home and announces it (a refresh)");
        let old_thumbnail = self
            .object(&format!("{}{image}/160.jpg", self.thumbnail_prefix))
            .await?;
        let replaced = self.replace_at_origin(image)?;
        let announced = Instant::now();
        self.announce_refresh(image).await?;
        let fresh = self.wait_for_served(&client, image, &replaced).await?;
        println!(
            "   GET /{image} -> {} from {}: the new version, {} ms after the announcement",
            fresh.status,
            fresh.served_by,
            announced.elapsed().as_millis()
        );
        check(
            fresh.served_by == "s3" && fresh.body == replaced,
            "the bucket serves the new version".into(),
        );
        // The object is served before the function's log line for it is written.
        let outcomes = self.wait_for_label(image, "refreshed").await?;
        println!("   backfill outcomes {}", format_outcomes(&outcomes));
        check(
            outcomes.get("refreshed") == Some(&1),
            "replaced once, with If-Match on the copy it revalidated".into(),
        );
        let invalidated = self.wait_for_log("CloudFront invalidation created").await?;
        println!(
            "   CloudFront: {} invalidation(s) created from {} changed path(s)",
            invalidated,
            self.invalidations.snapshot().1
        );
        check(invalidated >= 1, "the changed path invalidated".into());
        let new_thumbnail = self
            .wait_for_changed(
                &format!("{}{image}/160.jpg", self.thumbnail_prefix),
                old_thumbnail,
            )
            .await?;
        check(
            new_thumbnail,
            "the thumbnails follow: 160.jpg was rendered again from the new version".into(),
        );

        if let Some(second) = &self.second_region {
            self.two_regions(&client, second, copied_bytes, &mut check)
                .await?;
        }

        let (batches, records, deleted, failed) = self.backfill.snapshot();
        println!("\nBackfill queue: {batches} batches, {records} records, {deleted} deleted, {failed} failed");
        let (batches, records, deleted, failed) = self.parts.snapshot();
        println!(
            "Part queue: {batches} batches, {records} records, {deleted} deleted, {failed} failed"
        );
        let (batches, records, deleted, failed) = self.images.snapshot();
        println!(
            "Image queue: {batches} batches, {records} records, {deleted} deleted, {failed} failed"
        );
        if let Some(second) = &self.second_region {
            let (batches, records, deleted, failed) = second.backfill.snapshot();
            println!(
                "Backfill queue ({}): {batches} batches, {records} records, {deleted} deleted, {failed} failed",
                second.region
            );
            let (batches, records, deleted, failed) = second.images.snapshot();
            println!(
                "Image queue ({}): {batches} batches, {records} records, {deleted} deleted, {failed} failed",
                second.region
            );
        }
        if failures.is_empty() {
            println!("\nAll checks passed.");
            Ok(())
        } else {
            bail!("{} checks failed: {}", failures.len(), failures.join("; "))
        }
    }

    /// Viewers of two countries miss the same objects: each region's misses go to its own queue,
    /// its backfill fills its own bucket, and its next viewer is served from it.
    /// `copied_before`: the bytes the first region's backfill copied in the steps before.
    async fn two_regions(
        &self,
        client: &reqwest::Client,
        second: &RegionalStack,
        copied_before: u64,
        check: &mut impl FnMut(bool, String),
    ) -> Result<()> {
        let first = RegionalStack {
            region: self.region.clone(),
            bucket: self.bucket.clone(),
            s3: self.s3.clone(),
            backfill: self.backfill.clone(),
            images: self.images.clone(),
            backfill_log: self.backfill_log.clone(),
        };
        let stacks = [&first, second];
        let asked = |i: usize| -> Vec<&str> {
            ASKED_BY_BOTH
                .iter()
                .copied()
                .chain([ASKED_BY_ONE[i]])
                .collect()
        };
        println!(
            "\n10. Two regions: viewers in {} and {} miss the same objects",
            COUNTRIES[0], COUNTRIES[1]
        );
        for (stack, country) in stacks.iter().zip(COUNTRIES) {
            println!(
                "   viewers in {country} ({VIEWER_COUNTRY}: {country}): nearest regional stack {} (bucket {})",
                stack.region, stack.bucket
            );
        }

        let mut first_round = true;
        for (i, country) in COUNTRIES.iter().enumerate() {
            for key in asked(i) {
                let answer = self.get_from(client, key, country).await?;
                println!(
                    "   GET /{key} ({country}) -> {} from {}",
                    answer.status, answer.origin
                );
                first_round &= answer.status == 200 && answer.served_by == "domestic";
            }
        }
        check(
            first_round,
            "every first request served by the domestic origin".into(),
        );

        let mut own_queue = true;
        let mut own_bucket = true;
        let mut copied_bytes = [copied_before, 0];
        for (i, stack) in stacks.iter().enumerate() {
            for key in asked(i) {
                let expected = std::fs::read(self.catalogue.join(key))?;
                copied_bytes[i] += expected.len() as u64;
                let stored = wait_for_object_in(&stack.s3, &stack.bucket, key).await?;
                let outcomes = wait_for_outcome_in(&stack.backfill_log, key).await?;
                println!(
                    "   {}: {key} in bucket {} ({} bytes; backfill messages {}, outcomes {})",
                    stack.region,
                    stack.bucket,
                    stored.len(),
                    stack.backfill.records_for(key),
                    format_outcomes(&outcomes)
                );
                own_queue &= stack.backfill.records_for(key) >= 1;
                own_bucket &= stored == expected && outcomes.get("copied") == Some(&1);
            }
            // The other region's own object never reached this region's queue.
            own_queue &= stack.backfill.records_for(ASKED_BY_ONE[1 - i]) == 0;
        }
        check(
            own_queue,
            "each region's misses went to its own backfill queue".into(),
        );
        check(
            own_bucket,
            "each region's bucket filled from its own viewers' misses".into(),
        );

        let mut from_own = true;
        for (i, (stack, country)) in stacks.iter().zip(COUNTRIES).enumerate() {
            for key in asked(i) {
                let answer = self.get_from(client, key, country).await?;
                println!(
                    "   GET /{key} ({country}) -> {} from {}",
                    answer.status, answer.origin
                );
                from_own &= answer.status == 200 && answer.origin == format!("s3:{}", stack.region);
            }
        }
        check(
            from_own,
            "the next viewer of each region is served from its own regional bucket".into(),
        );

        let mut apart = true;
        for (i, stack) in stacks.iter().enumerate() {
            let other = stacks[1 - i];
            let key = ASKED_BY_ONE[i];
            let here = object_in(&stack.s3, &stack.bucket, key).await?.is_some();
            let there = object_in(&other.s3, &other.bucket, key).await?.is_some();
            println!(
                "   {key} (asked for in {} only): {} in {}, {} in {}",
                COUNTRIES[i],
                if here { "present" } else { "absent" },
                stack.region,
                if there { "present" } else { "absent" },
                other.region
            );
            apart &= here && !there;
        }
        check(
            apart,
            "an object asked for in one region only is in that region's bucket only".into(),
        );

        let key = ASKED_BY_ONE[1];
        let thumbnails =
            wait_for_thumbnails_in(&second.s3, &second.bucket, &self.thumbnail_prefix, key).await?;
        println!(
            "   {}: {} renditions of {key} under {}{key}/ in {}",
            second.region,
            thumbnails.len(),
            self.thumbnail_prefix,
            second.bucket
        );
        check(
            !thumbnails.is_empty(),
            format!(
                "{}'s image processor rendered thumbnails into its own bucket",
                second.region
            ),
        );
        if let Some(tools) = &self.status {
            self.regional_status(tools, stacks, copied_bytes, check)
                .await?;
        }
        Ok(())
    }

    /// The hook's and the backfills' EMF lines filed in CloudWatch (the hook's in us-east-1, where
    /// the edge simulator runs it; each backfill's in its region), then `backfill-ctl status` per
    /// region, checked against what the edge simulator saw and what the backfills copied.
    async fn regional_status(
        &self,
        tools: &StatusTools,
        stacks: [&RegionalStack; 2],
        copied_bytes: [u64; 2],
        check: &mut impl FnMut(bool, String),
    ) -> Result<()> {
        // Every invocation returned, so every metric line is in the logs.
        for stack in stacks {
            let started = Instant::now();
            while started.elapsed() < WAIT {
                let (_, records, deleted, failed) = stack.backfill.snapshot();
                if deleted + failed >= records {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!("   per-region status (the EMF lines filed in CloudWatch by the stand-in of its extraction):");
        let mut hook_datapoints = 0;
        let mut edge_names = BTreeSet::new();
        for path in &self.edge_logs {
            let log = FunctionLog {
                path: path.clone(),
                region: "us-east-1".into(),
            };
            let forwarded = metrics::forward(&tools.cloudwatch, &log).await?;
            hook_datapoints += forwarded.datapoints;
            edge_names.extend(forwarded.function_names);
        }
        println!(
            "   {hook_datapoints} datapoints from the {} edge sandboxes' logs -> us-east-1",
            self.edge_logs.len()
        );
        let mut backfill_names = Vec::new();
        for stack in stacks {
            let log = FunctionLog {
                path: stack.backfill_log.clone(),
                region: stack.region.clone(),
            };
            let forwarded = metrics::forward(&tools.cloudwatch, &log).await?;
            println!(
                "   {} datapoints from {}'s backfill log -> {}",
                forwarded.datapoints, stack.region, stack.region
            );
            let names: Vec<String> = forwarded.function_names.into_iter().collect();
            let [name] = &names[..] else {
                bail!(
                    "{}'s backfill log names no one function: {names:?}",
                    stack.region
                );
            };
            backfill_names.push(name.clone());
        }
        let edge_function = edge_names
            .iter()
            .find_map(|name| name.strip_prefix("us-east-1."))
            .context("the hook's metrics name no us-east-1.NAME function")?
            .to_owned();
        let mut arguments = vec![
            "status".to_owned(),
            "--edge-function".into(),
            edge_function,
            "--edge-regions".into(),
            "us-east-1".into(),
            "--since".into(),
            "1h".into(),
        ];
        for (stack, name) in stacks.iter().zip(&backfill_names) {
            arguments.push("--regional".into());
            arguments.push(format!("{}={name}", stack.region));
        }
        println!("   $ backfill-ctl {}", arguments.join(" "));
        let table = backfill_ctl(&tools.backfill_ctl, &arguments).await?;
        for line in table.lines() {
            println!("   {line}");
        }
        arguments.push("--json".into());
        let report: Value =
            serde_json::from_str(&backfill_ctl(&tools.backfill_ctl, &arguments).await?)
                .context("backfill-ctl status --json")?;
        let attempts = self.edge_stats.hooked_attempts.lock().unwrap().clone();
        let mut matches = true;
        for (stack, copied) in stacks.iter().zip(copied_bytes) {
            let row = report["regional"]["regions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|row| row["region"].as_str() == Some(&stack.region))
                .cloned()
                .unwrap_or_default();
            let (fetches, fallbacks) = attempts.get(&stack.region).copied().unwrap_or_default();
            let reported = (
                row["origin_fetches"].as_u64(),
                row["fallbacks"].as_u64(),
                row["bytes_backfilled"].as_u64(),
            );
            println!(
                "   {}: the edge simulator ran the hook on {fetches} bucket and {fallbacks} domestic attempts; the backfill copied {copied} bytes",
                stack.region
            );
            matches &= reported == (Some(fetches), Some(fallbacks), Some(copied));
        }
        check(
            matches,
            "backfill-ctl status per region: origin fetches, fallbacks and bytes backfilled as the scenario did"
                .into(),
        );
        Ok(())
    }

    /// A GET by a viewer in `country`.
    async fn get_from(
        &self,
        client: &reqwest::Client,
        key: &str,
        country: &str,
    ) -> Result<Fetched> {
        self.get_with(client, key, &[(VIEWER_COUNTRY, country)])
            .await
    }

    async fn get(&self, client: &reqwest::Client, key: &str) -> Result<Fetched> {
        self.get_with(client, key, &[]).await
    }

    async fn get_with(
        &self,
        client: &reqwest::Client,
        key: &str,
        headers: &[(&str, &str)],
    ) -> Result<Fetched> {
        let path: String = key
            .split('/')
            .map(encode_segment)
            .collect::<Vec<_>>()
            .join("/");
        let started = Instant::now();
        let mut request = client.get(format!("{}/{path}", self.edge));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.context("GET through the edge")?;
        let status = response.status().as_u16();
        let origin = response
            .headers()
            .get(SERVED_BY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        let served_by = origin.split(':').next().unwrap_or_default().to_owned();
        let body = response.bytes().await?.to_vec();
        Ok(Fetched {
            status,
            served_by,
            origin,
            body,
            elapsed: started.elapsed(),
        })
    }

    /// Replaces the origin's file with a new version (the same photo, colours inverted), as a
    /// CMS would: written aside, then renamed over it. Its bytes.
    fn replace_at_origin(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.catalogue.join(key);
        let mut photo = image::open(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .to_rgb8();
        image::imageops::colorops::invert(&mut photo);
        let mut bytes = Vec::new();
        photo.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Jpeg,
        )?;
        let aside = path.with_extension("new");
        std::fs::write(&aside, &bytes)?;
        std::fs::rename(&aside, &path)?;
        Ok(bytes)
    }

    /// The change message a CMS sends (docs/cli.md), straight to the backfill queue.
    async fn announce_refresh(&self, key: &str) -> Result<()> {
        let change = serde_json::json!({
            "version": 1,
            "kind": "refresh",
            "bucket": self.bucket,
            "origin": {"protocol": "http", "host": "127.0.0.1", "port": self.origin_port, "path": ""},
            "key": key,
            "request_id": "demo-refresh",
            "enqueued_at": time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)?,
        });
        self.sqs
            .send_message()
            .queue_url(&self.backfill_queue)
            .message_body(change.to_string())
            .send()
            .await
            .context("sending the refresh")?;
        Ok(())
    }

    /// Waits until the edge serves `expected` for `key`.
    async fn wait_for_served(
        &self,
        client: &reqwest::Client,
        key: &str,
        expected: &[u8],
    ) -> Result<Fetched> {
        let started = Instant::now();
        loop {
            let fetched = self.get(client, key).await?;
            if fetched.body == expected || started.elapsed() > WAIT {
                return Ok(fetched);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the object differs from `before`; whether it did.
    async fn wait_for_changed(&self, key: &str, before: Option<Vec<u8>>) -> Result<bool> {
        let started = Instant::now();
        while started.elapsed() < WAIT {
            if self
                .object(key)
                .await?
                .is_some_and(|now| Some(&now) != before.as_ref())
            {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(false)
    }

    /// Waits until the backfill's log has a line with `message`; how many it has.
    async fn wait_for_log(&self, message: &str) -> Result<usize> {
        let started = Instant::now();
        loop {
            let text = tokio::fs::read_to_string(&self.backfill_log)
                .await
                .unwrap_or_default();
            let count = text
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter(|record| {
                    record["message"].as_str() == Some(message)
                        || record["fields"]["message"].as_str() == Some(message)
                })
                .count();
            if count > 0 || started.elapsed() > WAIT {
                return Ok(count);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn object(&self, key: &str) -> Result<Option<Vec<u8>>> {
        object_in(&self.s3, &self.bucket, key).await
    }

    async fn wait_for_object(&self, key: &str) -> Result<Vec<u8>> {
        wait_for_object_in(&self.s3, &self.bucket, key).await
    }

    async fn wait_for_thumbnails(&self, key: &str) -> Result<Vec<(String, (u32, u32))>> {
        wait_for_thumbnails_in(&self.s3, &self.bucket, &self.thumbnail_prefix, key).await
    }

    /// The backfill function's outcomes for `key`, read from its log (one JSON line per record).
    async fn outcomes(&self, key: &str) -> Result<HashMap<String, usize>> {
        outcomes_in(&self.backfill_log, key).await
    }

    async fn wait_for_outcome(&self, key: &str) -> Result<HashMap<String, usize>> {
        let started = Instant::now();
        loop {
            let outcomes = self.outcomes(key).await?;
            if !outcomes.is_empty() || started.elapsed() > WAIT {
                return Ok(outcomes);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the outcomes for `key` include `label`.
    async fn wait_for_label(&self, key: &str, label: &str) -> Result<HashMap<String, usize>> {
        let started = Instant::now();
        loop {
            let outcomes = self.outcomes(key).await?;
            if outcomes.contains_key(label) || started.elapsed() > WAIT {
                return Ok(outcomes);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every message delivered for `key` (backfill messages and part tasks) has an
    /// outcome.
    async fn wait_for_settled(&self, key: &str) -> Result<HashMap<String, usize>> {
        let started = Instant::now();
        loop {
            let outcomes = self.outcomes(key).await?;
            let settled: usize = outcomes.values().sum();
            let delivered = self.backfill.records_for(key) + self.parts.records_for(key);
            if (settled > 0 && settled >= delivered) || started.elapsed() > WAIT {
                tokio::time::sleep(Duration::from_millis(300)).await;
                return self.outcomes(key).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn object_in(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(object) => Ok(Some(object.body.collect().await?.into_bytes().to_vec())),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

async fn wait_for_object_in(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Vec<u8>> {
    let started = Instant::now();
    while started.elapsed() < WAIT {
        if let Some(body) = object_in(s3, bucket, key).await? {
            return Ok(body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{key} never reached the bucket {bucket}")
}

async fn wait_for_thumbnails_in(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    thumbnail_prefix: &str,
    key: &str,
) -> Result<Vec<(String, (u32, u32))>> {
    let prefix = format!("{thumbnail_prefix}{key}/");
    let started = Instant::now();
    let mut last = 0;
    loop {
        let listed = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(&prefix)
            .send()
            .await?;
        let keys: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        // Done when the count has been stable for a moment.
        if !keys.is_empty() && keys.len() == last {
            let mut thumbnails = Vec::new();
            for key in keys {
                let body = object_in(s3, bucket, &key)
                    .await?
                    .context("a listed thumbnail vanished")?;
                let decoded =
                    image::load_from_memory(&body).with_context(|| format!("decoding {key}"))?;
                thumbnails.push((key, (decoded.width(), decoded.height())));
            }
            return Ok(thumbnails);
        }
        if started.elapsed() > WAIT {
            bail!("no thumbnails under {prefix} in {bucket}");
        }
        last = keys.len();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A backfill function's outcomes for `key`, read from its log (one JSON line per record).
async fn outcomes_in(log: &Path, key: &str) -> Result<HashMap<String, usize>> {
    let text = tokio::fs::read_to_string(log).await.unwrap_or_default();
    let mut outcomes = HashMap::new();
    for line in text.lines() {
        let Ok(record) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let record_key = record["span"]["key"].as_str();
        let outcome = record["outcome"]
            .as_str()
            .or_else(|| record["reason"].as_str());
        if let (Some(record_key), Some(outcome)) = (record_key, outcome) {
            if record_key == key {
                *outcomes.entry(outcome.to_owned()).or_default() += 1;
            }
        }
    }
    Ok(outcomes)
}

/// Waits until the log has an outcome for `key`.
async fn wait_for_outcome_in(log: &Path, key: &str) -> Result<HashMap<String, usize>> {
    let started = Instant::now();
    loop {
        let outcomes = outcomes_in(log, key).await?;
        if !outcomes.is_empty() || started.elapsed() > WAIT {
            return Ok(outcomes);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs backfill-ctl; its standard output.
async fn backfill_ctl(program: &Path, arguments: &[String]) -> Result<String> {
    let output = tokio::process::Command::new(program)
        .args(arguments)
        .output()
        .await
        .with_context(|| format!("running {}", program.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines() {
        println!("   {line}");
    }
    if !output.status.success() {
        bail!(
            "backfill-ctl {} exited with {}",
            arguments.join(" "),
            output.status
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether a burst's outcomes are those of one copy: copied at least once (on S3 one conditional
/// write wins; moto checks If-None-Match apart from the write, so two completes in the same
/// instant may both pass there), and every other message found the object present or its copy in
/// flight, or was a part of that copy.
fn one_copy(outcomes: &HashMap<String, usize>) -> bool {
    const OF_ONE_COPY: [&str; 5] = [
        "copied",
        "already_present",
        "in_flight",
        "split",
        "part_uploaded",
    ];
    outcomes.get("copied").is_some_and(|n| *n >= 1)
        && outcomes
            .keys()
            .all(|outcome| OF_ONE_COPY.contains(&outcome.as_str()))
}

fn format_outcomes(outcomes: &HashMap<String, usize>) -> String {
    if outcomes.is_empty() {
        return "(none yet)".into();
    }
    let mut parts: Vec<String> = outcomes.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    parts.sort();
    parts.join(", ")
}

fn encode_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(pairs: &[(&str, usize)]) -> HashMap<String, usize> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn a_burst_settles_as_one_copy() {
        assert!(one_copy(&outcomes(&[("copied", 1)])));
        assert!(one_copy(&outcomes(&[
            ("copied", 1),
            ("in_flight", 3),
            ("already_present", 2)
        ])));
        assert!(one_copy(&outcomes(&[
            ("copied", 1),
            ("split", 1),
            ("part_uploaded", 4)
        ])));
        // Nobody copied it, or a message failed, was refused or restarted the copy.
        assert!(!one_copy(&outcomes(&[("in_flight", 4)])));
        assert!(!one_copy(&outcomes(&[])));
        assert!(!one_copy(&outcomes(&[("copied", 1), ("origin_error", 1)])));
        assert!(!one_copy(&outcomes(&[("copied", 1), ("restarted", 1)])));
    }
}
