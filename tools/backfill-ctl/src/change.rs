//! `refresh` and `purge`: announce on the backfill queue that objects changed or must go at the
//! overseas origin (`shared::change::ChangeMessage`), one message a key, or one for every object
//! under a key prefix (the backfill function lists the bucket and fans out).

use std::collections::HashMap;

use aws_config::SdkConfig;
use shared::change::{ChangeKind, ChangeMessage};
use shared::message::FifoIds;
use shared::ObjectKey;
use time::OffsetDateTime;

use crate::cli::ChangeArgs;
use crate::error::{CtlError, Outcome};
use crate::input::{read_key_list, Target};
use crate::queue::{Outgoing, SqsQueue};
use crate::send::{finish, plan, progress_bar, MessageTemplate, Sender, Summary};

/// The key prefix that `--prefix` alone names: the key prefix, then the path prefix with one
/// leading '/' dropped (as a key list's lines are read). An empty path prefix is refused: it
/// would name every object in the bucket.
pub fn change_prefix(key_prefix: &str, raw: &str) -> Result<ObjectKey, CtlError> {
    let trimmed = raw.trim();
    let path = trimmed.strip_prefix('/').unwrap_or(trimmed);
    if path.is_empty() {
        return Err(CtlError::Usage(format!(
            "--prefix {raw:?} is empty: give the path prefix of the objects that changed, such as \
             images/2026/ (a change of every object in the bucket is not sent from here)"
        )));
    }
    ObjectKey::new(format!("{key_prefix}{path}")).map_err(|e| {
        let with = if key_prefix.is_empty() {
            String::new()
        } else {
            format!(" with the key prefix {key_prefix:?}")
        };
        CtlError::Usage(format!("--prefix {raw:?}{with}: {e}"))
    })
}

/// A change's FIFO ids. The message group is that of the edge hook's (and prewarm's) copies of
/// the same object, so that SQS delivers a key's copies and changes in the order they were sent.
/// The deduplication id is the change's own: the copy's (one per object) would make SQS drop a
/// change sent within five minutes of a copy. It holds the run's request id, so it is new on every
/// run and the same for a retry of the same entry within a run, which SQS then drops as a repeat.
pub fn change_fifo_ids(
    kind: ChangeKind,
    request_id: &str,
    bucket: &str,
    subject: &ObjectKey,
) -> FifoIds {
    let object = FifoIds::for_object(bucket, subject);
    FifoIds {
        deduplication_id: format!("{}-{request_id}-{}", kind.as_str(), object.deduplication_id),
        group_id: object.group_id,
    }
}

/// The change of one listed key, with its `uri` (the listed path, percent-encoded) so that the
/// function fetches what prewarm would have fetched whatever its own key prefix; refused with a
/// reason if the backfill function would refuse it.
pub fn key_message(
    template: &MessageTemplate,
    kind: ChangeKind,
    target: &Target,
    now: OffsetDateTime,
) -> Result<Outgoing, String> {
    let mut change = ChangeMessage::for_key(
        kind,
        &template.bucket,
        &template.origin,
        target.key.clone(),
        &template.request_id,
        now,
    );
    change.uri = Some(target.uri.clone());
    outgoing(template, &change, target.key.to_string(), &target.key)
}

/// The change of every object under `prefix` (a full key prefix).
pub fn prefix_message(
    template: &MessageTemplate,
    kind: ChangeKind,
    prefix: &ObjectKey,
    now: OffsetDateTime,
) -> Result<Outgoing, String> {
    let change = ChangeMessage::for_prefix(
        kind,
        &template.bucket,
        &template.origin,
        prefix.as_str(),
        &template.request_id,
        now,
    );
    outgoing(template, &change, format!("prefix {prefix}"), prefix)
}

fn outgoing(
    template: &MessageTemplate,
    change: &ChangeMessage,
    label: String,
    subject: &ObjectKey,
) -> Result<Outgoing, String> {
    let body = change.to_json();
    // The checks the function makes: the change's, then its copy's.
    let parsed = ChangeMessage::parse(&body).map_err(|e| e.to_string())?;
    parsed.copy("").map_err(|e| e.to_string())?;
    let fifo = template
        .fifo
        .then(|| change_fifo_ids(change.kind, &template.request_id, &template.bucket, subject));
    Ok(Outgoing {
        label,
        body,
        attributes: HashMap::new(),
        group_id: fifo.as_ref().map(|ids| ids.group_id.clone()),
        deduplication_id: fifo.map(|ids| ids.deduplication_id),
    })
}

/// What a run changes.
enum Scope {
    Keys(Vec<Target>),
    Prefix(ObjectKey),
}

pub async fn run(
    kind: ChangeKind,
    args: ChangeArgs,
    config: &SdkConfig,
) -> Result<Outcome, CtlError> {
    let (scope, mut summary) = match read_key_list(&args.list, args.prefix.as_deref()).await? {
        Some(list) => {
            let (targets, summary) = plan(list, &args.send.key_prefix);
            (Scope::Keys(targets), summary)
        }
        None => {
            let raw = args.prefix.as_deref().ok_or_else(|| {
                CtlError::Usage("give --keys, --from-manifest or --prefix".into())
            })?;
            let prefix = change_prefix(&args.send.key_prefix, raw)?;
            let summary = Summary {
                prefix: Some(prefix.to_string()),
                ..Summary::default()
            };
            (Scope::Prefix(prefix), summary)
        }
    };

    let queue = SqsQueue::new(config, &args.send.queue_url);
    queue.attributes().await?;
    let template = MessageTemplate::for_run(&args.send, &queue, OffsetDateTime::now_utc());
    let progress = progress_bar(match &scope {
        Scope::Keys(targets) => targets.len(),
        Scope::Prefix(_) => 1,
    });
    let mut sender = Sender::new(&queue, args.send.rate, &progress);
    let result = announce(kind, &scope, &template, &mut sender, &mut summary).await;
    progress.finish_and_clear();
    finish(&template, &summary, result)
}

async fn announce(
    kind: ChangeKind,
    scope: &Scope,
    template: &MessageTemplate,
    sender: &mut Sender<'_>,
    summary: &mut Summary,
) -> Result<(), CtlError> {
    match scope {
        Scope::Keys(targets) => {
            for target in targets {
                let message = key_message(template, kind, target, OffsetDateTime::now_utc());
                let at = format!("line {}", target.line);
                sender
                    .offer(message, at, target.key.to_string(), summary)
                    .await?;
            }
        }
        Scope::Prefix(prefix) => {
            let message = prefix_message(template, kind, prefix, OffsetDateTime::now_utc());
            sender
                .offer(message, "--prefix".into(), prefix.to_string(), summary)
                .await?;
        }
    }
    sender.flush(summary).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::change::Scope as MessageScope;
    use shared::message::{OriginLocation, Protocol};

    use crate::input::{targets, ListedPath};

    fn template(fifo: bool) -> MessageTemplate {
        MessageTemplate {
            bucket: "overseas-origin".into(),
            origin: OriginLocation {
                protocol: Protocol::Https,
                host: "www.example.com".into(),
                port: 443,
                path: "/static".into(),
            },
            request_id: "backfill-ctl-1795000000-0a1b2c3d".into(),
            fifo,
        }
    }

    fn target(path: &str, key_prefix: &str) -> Target {
        let listed = ListedPath {
            line: 1,
            path: ObjectKey::new(path).unwrap(),
        };
        targets(&[listed], key_prefix).0.remove(0)
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap()
    }

    #[test]
    fn a_key_change_names_the_key_and_the_path_prewarm_fetches() {
        let target = target("images/café au lait.jpg", "mirror/");
        for kind in [ChangeKind::Refresh, ChangeKind::Purge] {
            let outgoing = key_message(&template(false), kind, &target, now()).unwrap();
            let change = ChangeMessage::parse(&outgoing.body).unwrap();
            assert_eq!(change.kind, kind);
            assert_eq!(change.bucket, "overseas-origin");
            assert_eq!(
                change.scope(),
                MessageScope::Key(&ObjectKey::new("mirror/images/café au lait.jpg").unwrap())
            );
            assert_eq!(
                change.uri.as_deref(),
                Some("/images/caf%C3%A9%20au%20lait.jpg")
            );
            assert_eq!(change.request_id, "backfill-ctl-1795000000-0a1b2c3d");
            assert_eq!(change.enqueued_at, now());
            // Whatever the function's key prefix, the copy fetches the listed path.
            let copy = change.copy("other/").unwrap().unwrap();
            assert_eq!(
                copy.origin_url(),
                "https://www.example.com:443/static/images/caf%C3%A9%20au%20lait.jpg"
            );
            assert_eq!(outgoing.label, "mirror/images/café au lait.jpg");
            assert_eq!(outgoing.group_id, None);
            assert_eq!(outgoing.deduplication_id, None);
        }
    }

    #[test]
    fn a_prefix_change_is_one_message_without_a_uri() {
        let prefix = change_prefix("mirror/", "/images/2026/").unwrap();
        let outgoing = prefix_message(&template(false), ChangeKind::Purge, &prefix, now()).unwrap();
        let change = ChangeMessage::parse(&outgoing.body).unwrap();
        assert_eq!(change.kind, ChangeKind::Purge);
        assert_eq!(change.scope(), MessageScope::Prefix("mirror/images/2026/"));
        assert_eq!(change.uri, None);
        assert_eq!(outgoing.label, "prefix mirror/images/2026/");
    }

    #[test]
    fn on_a_fifo_queue_a_change_follows_the_copies_of_its_key_but_is_never_dropped_as_one() {
        let target = target("images/a.jpg", "");
        let copy = FifoIds::for_object("overseas-origin", &target.key);
        let refresh = key_message(&template(true), ChangeKind::Refresh, &target, now()).unwrap();
        let purge = key_message(&template(true), ChangeKind::Purge, &target, now()).unwrap();
        assert_eq!(refresh.group_id.as_deref(), Some(copy.group_id.as_str()));
        assert_eq!(purge.group_id, refresh.group_id);
        let refresh_id = refresh.deduplication_id.unwrap();
        assert_ne!(refresh_id, copy.deduplication_id);
        assert_ne!(Some(&refresh_id), purge.deduplication_id.as_ref());
        assert_eq!(
            refresh_id,
            format!(
                "refresh-backfill-ctl-1795000000-0a1b2c3d-{}",
                copy.deduplication_id
            )
        );
        // SQS takes up to 128 characters.
        assert!(refresh_id.len() <= 128, "{}", refresh_id.len());
        // Another run, another id.
        let mut next_run = template(true);
        next_run.request_id = "backfill-ctl-1795000001-99999999".into();
        let again = key_message(&next_run, ChangeKind::Refresh, &target, now()).unwrap();
        assert_ne!(again.deduplication_id.unwrap(), refresh_id);

        let prefix = change_prefix("", "images/").unwrap();
        let whole = prefix_message(&template(true), ChangeKind::Refresh, &prefix, now()).unwrap();
        assert_eq!(
            whole.group_id,
            Some(FifoIds::for_object("overseas-origin", &prefix).group_id)
        );
        assert!(whole
            .deduplication_id
            .unwrap()
            .starts_with("refresh-backfill-ctl-"));
    }

    #[test]
    fn bad_prefixes_are_refused_with_the_reason() {
        assert_eq!(change_prefix("", "images/").unwrap().as_str(), "images/");
        assert_eq!(
            change_prefix("mirror/", " /video/2019").unwrap().as_str(),
            "mirror/video/2019"
        );
        for (raw, reason) in [
            ("", "is empty"),
            ("/", "is empty"),
            ("images/../etc/", "'.' or '..' path segment"),
            ("images/\u{7}", "control character"),
        ] {
            let err = change_prefix("mirror/", raw).unwrap_err();
            assert!(matches!(err, CtlError::Usage(_)), "{err:?}");
            let text = err.to_string();
            assert!(text.starts_with(&format!("--prefix {raw:?}")), "{text}");
            assert!(text.contains(reason), "{text}");
        }
        let long = "a".repeat(1020);
        let err = change_prefix("mirror/", &long).unwrap_err().to_string();
        assert!(err.contains("1027 bytes long"), "{err}");
    }
}
