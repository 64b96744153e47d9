//! `prewarm`: asks the backfill function to copy a list of keys before viewers ask for them.

use std::collections::HashMap;

use aws_config::SdkConfig;
use futures::future::join_all;
use shared::message::{BackfillMessage, FifoIds, Trigger, MESSAGE_VERSION};
use time::OffsetDateTime;

use crate::cli::PrewarmArgs;
use crate::error::{CtlError, Outcome};
use crate::input::{read_key_list, Target};
use crate::queue::{Outgoing, SqsQueue};
use crate::send::{finish, plan, progress_bar, MessageTemplate, Sender, Summary};
use crate::store::{Bucket, Presence};

/// Keys whose presence is checked at once.
const CHECK_CONCURRENCY: usize = 16;

/// The backfill message for one target, refused with a reason if the backfill function would
/// refuse it.
pub fn message(
    template: &MessageTemplate,
    target: &Target,
    now: OffsetDateTime,
) -> Result<Outgoing, String> {
    let message = BackfillMessage {
        version: MESSAGE_VERSION,
        bucket: template.bucket.clone(),
        key: target.key.clone(),
        origin: template.origin.clone(),
        uri: target.uri.clone(),
        request_id: template.request_id.clone(),
        enqueued_at: now,
        trigger: Trigger::Operator,
        observed: None,
    };
    let body = message.to_json();
    BackfillMessage::parse(&body).map_err(|e| e.to_string())?;
    let fifo = template
        .fifo
        .then(|| FifoIds::for_object(&template.bucket, &target.key));
    Ok(Outgoing {
        label: target.key.to_string(),
        body,
        attributes: HashMap::new(),
        group_id: fifo.as_ref().map(|ids| ids.group_id.clone()),
        deduplication_id: fifo.map(|ids| ids.deduplication_id),
    })
}

pub async fn run(args: PrewarmArgs, config: &SdkConfig) -> Result<Outcome, CtlError> {
    let list = read_key_list(&args.list, args.prefix.as_deref())
        .await?
        .ok_or_else(|| CtlError::Usage("give --keys or --from-manifest".into()))?;
    let (targets, mut summary) = plan(list, &args.send.key_prefix);
    summary.skipped = Some(0);

    let queue = SqsQueue::new(config, &args.send.queue_url);
    queue.attributes().await?;
    let bucket = if args.no_check {
        None
    } else {
        let bucket = Bucket::new(config, &args.send.bucket);
        bucket.check_exists().await?;
        Some(bucket)
    };
    let template = MessageTemplate::for_run(&args.send, &queue, OffsetDateTime::now_utc());
    let progress = progress_bar(targets.len());
    let mut sender = Sender::new(&queue, args.send.rate, &progress);
    let result = prewarm(
        &targets,
        bucket.as_ref(),
        &template,
        &mut sender,
        &mut summary,
    )
    .await;
    progress.finish_and_clear();
    finish(&template, &summary, result)
}

async fn prewarm(
    targets: &[Target],
    bucket: Option<&Bucket>,
    template: &MessageTemplate,
    sender: &mut Sender<'_>,
    summary: &mut Summary,
) -> Result<(), CtlError> {
    for chunk in targets.chunks(CHECK_CONCURRENCY) {
        let presence = match bucket {
            Some(bucket) => join_all(chunk.iter().map(|t| bucket.presence(&t.key))).await,
            None => chunk.iter().map(|_| Ok(Presence::Absent)).collect(),
        };
        for (target, presence) in chunk.iter().zip(presence) {
            match presence {
                Ok(Presence::Present) => {
                    *summary.skipped.get_or_insert(0) += 1;
                    sender.pass();
                }
                Ok(Presence::Absent) => {
                    let outgoing = message(template, target, OffsetDateTime::now_utc());
                    let at = format!("line {}", target.line);
                    sender
                        .offer(outgoing, at, target.key.to_string(), summary)
                        .await?;
                }
                Err(reason) => {
                    summary.failed.push((target.key.to_string(), reason));
                    sender.pass();
                }
            }
        }
    }
    sender.flush(summary).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::message::{OriginLocation, Protocol};
    use shared::ObjectKey;

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
            request_id: "backfill-ctl-1-0".into(),
            fifo,
        }
    }

    #[test]
    fn messages_are_what_the_backfill_function_reads() {
        let listed = ListedPath {
            line: 1,
            path: ObjectKey::new("images/a b.jpg").unwrap(),
        };
        let (found, _) = targets(&[listed], "");
        let now = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
        let outgoing = message(&template(false), &found[0], now).unwrap();
        let backfill = BackfillMessage::parse(&outgoing.body).unwrap();
        assert_eq!(backfill.trigger, Trigger::Operator);
        assert_eq!(backfill.key.as_str(), "images/a b.jpg");
        assert_eq!(
            backfill.origin_url(),
            "https://www.example.com:443/static/images/a%20b.jpg"
        );
        assert_eq!(backfill.request_id, "backfill-ctl-1-0");
        assert_eq!(backfill.enqueued_at, now);
        assert_eq!(outgoing.label, "images/a b.jpg");
        assert_eq!(outgoing.group_id, None);

        let fifo = message(&template(true), &found[0], now).unwrap();
        let ids = FifoIds::for_object("overseas-origin", &found[0].key);
        assert_eq!(fifo.group_id, Some(ids.group_id));
        assert_eq!(fifo.deduplication_id, Some(ids.deduplication_id));
    }
}
