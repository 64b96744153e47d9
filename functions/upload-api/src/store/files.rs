//! File versions in DynamoDB (`FILES_TABLE`): partition key `key` (the object key), sort key
//! `version` (sorts in upload order), so a key's latest version is one descending query. The
//! global secondary index `feed` (partition `owner`, sort `change`, all attributes projected) is
//! each owner's change feed in the order records were written.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::Error;
use crate::record::{FileVersion, StoredChecksum};
use crate::store::{
    is_conditional_failure, n, number, optional_string, s, string, ChangesPage, FileIndex, Item,
    Recorded,
};

/// The feed index's name.
pub const FEED_INDEX: &str = "feed";
/// Feed queries per request, when filters leave pages short.
const FEED_QUERIES: usize = 5;

#[derive(Debug, Clone)]
pub struct DynamoFiles {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoFiles {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoFiles {
            client,
            table: table.into(),
        }
    }

    async fn read(&self, key: &str, version: &str) -> Result<Option<Item>, Error> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("key", s(key))
            .key("version", s(version))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::aws("GetItem", e))?;
        Ok(output.item)
    }
}

fn item(version: &FileVersion) -> Item {
    let mut item = Item::new();
    item.insert("key".into(), s(&version.key));
    item.insert("version".into(), s(&version.version));
    item.insert("owner".into(), s(&version.owner));
    item.insert("change".into(), s(&version.change));
    item.insert("size".into(), n(version.size));
    item.insert("etag".into(), s(&version.etag));
    item.insert("content_type".into(), s(&version.content_type));
    item.insert("uploaded_at".into(), s(&version.uploaded_at));
    item.insert("recorded_at_ms".into(), n(version.recorded_at_ms));
    item.insert("notified".into(), AttributeValue::Bool(false));
    if let Some(id) = &version.s3_version_id {
        item.insert("s3_version_id".into(), s(id));
    }
    if let Some(checksum) = &version.checksum {
        item.insert("checksum_algorithm".into(), s(&checksum.algorithm));
        item.insert("checksum_value".into(), s(&checksum.value));
        if let Some(kind) = &checksum.kind {
            item.insert("checksum_type".into(), s(kind));
        }
    }
    item
}

fn version(item: &Item) -> Result<FileVersion, Error> {
    let checksum = match (
        optional_string(item, "checksum_algorithm"),
        optional_string(item, "checksum_value"),
    ) {
        (Some(algorithm), Some(value)) => Some(StoredChecksum {
            algorithm,
            value,
            kind: optional_string(item, "checksum_type"),
        }),
        _ => None,
    };
    Ok(FileVersion {
        key: string(item, "key")?,
        owner: string(item, "owner")?,
        version: string(item, "version")?,
        s3_version_id: optional_string(item, "s3_version_id"),
        size: number(item, "size")?,
        etag: string(item, "etag")?,
        checksum,
        content_type: string(item, "content_type")?,
        uploaded_at: string(item, "uploaded_at")?,
        recorded_at_ms: number(item, "recorded_at_ms")?,
        change: string(item, "change")?,
    })
}

fn notified(item: &Item) -> bool {
    item.get("notified")
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

impl FileIndex for DynamoFiles {
    async fn record(&self, new: &FileVersion) -> Result<Recorded, Error> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(new)))
            .condition_expression("attribute_not_exists(#version)")
            .expression_attribute_names("#version", "version")
            .send()
            .await;
        match result {
            Ok(_) => Ok(Recorded::New),
            Err(err) if is_conditional_failure(&err) => {
                let stored = self
                    .read(&new.key, &new.version)
                    .await?
                    .ok_or_else(|| Error::CorruptRecord("a version vanished".into()))?;
                Ok(Recorded::Existing {
                    notified: notified(&stored),
                    stored: Box::new(version(&stored)?),
                })
            }
            Err(err) => Err(Error::aws("PutItem", err)),
        }
    }

    async fn mark_notified(&self, key: &str, version: &str) -> Result<(), Error> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("key", s(key))
            .key("version", s(version))
            .update_expression("SET notified = :true")
            .condition_expression("attribute_exists(#version)")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(|e| Error::aws("UpdateItem", e))?;
        Ok(())
    }

    async fn versions(&self, key: &str, limit: usize) -> Result<Vec<FileVersion>, Error> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#key = :key")
            .expression_attribute_names("#key", "key")
            .expression_attribute_values(":key", s(key))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::aws("Query", e))?;
        output.items().iter().map(version).collect()
    }

    async fn changes(
        &self,
        owner: &str,
        prefix: &str,
        after: Option<&str>,
        horizon: &str,
        limit: usize,
    ) -> Result<ChangesPage, Error> {
        let mut page = ChangesPage {
            changes: Vec::new(),
            last_read: None,
            more: false,
        };
        let mut start: Option<Item> = None;
        for _ in 0..FEED_QUERIES {
            let wanted = limit.saturating_sub(page.changes.len());
            if wanted == 0 {
                break;
            }
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(FEED_INDEX)
                .key_condition_expression("#owner = :owner AND #change BETWEEN :after AND :horizon")
                .filter_expression("begins_with(#key, :prefix)")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_names("#change", "change")
                .expression_attribute_names("#key", "key")
                .expression_attribute_values(":owner", s(owner))
                .expression_attribute_values(":after", s(after.unwrap_or("0")))
                .expression_attribute_values(":horizon", s(horizon))
                .expression_attribute_values(":prefix", s(prefix))
                .limit(i32::try_from(wanted).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| Error::aws("Query", e))?;
            for found in output.items() {
                let found = version(found)?;
                // BETWEEN includes its bounds; the cursor's own change was read before.
                if Some(found.change.as_str()) != after {
                    page.last_read = Some(found.change.clone());
                    page.changes.push(found);
                }
            }
            match output.last_evaluated_key {
                Some(last) => {
                    if let Some(change) = last.get("change").and_then(|v| v.as_s().ok()) {
                        page.last_read = Some(change.clone());
                    }
                    page.more = true;
                    start = Some(last);
                }
                None => {
                    page.more = false;
                    break;
                }
            }
        }
        Ok(page)
    }
}
