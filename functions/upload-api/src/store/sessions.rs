//! Multipart sessions in DynamoDB (`UPLOADS_TABLE`, key `id` = `upload#<upload id>`): who
//! started the upload, for which key, its plan, its declared CRC32C and the CRC32C signed into
//! each part's URL, until when it may be used, and whether it is still open. The table's TTL
//! attribute (`ttl`) deletes a session a week after it expired, so that a late client is told
//! "expired" rather than "unknown".

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::error::Error;
use crate::plan::PartPlan;
use crate::store::{is_conditional_failure, n, number, s, string, Item, Sessions};

/// How long an expired session is kept before DynamoDB deletes it.
const KEEP_EXPIRED_S: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Open,
    Completed,
    Aborted,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Open => "OPEN",
            SessionState::Completed => "COMPLETED",
            SessionState::Aborted => "ABORTED",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "OPEN" => Some(SessionState::Open),
            "COMPLETED" => Some(SessionState::Completed),
            "ABORTED" => Some(SessionState::Aborted),
            _ => None,
        }
    }
}

/// One multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub upload_id: String,
    pub owner: String,
    pub key: String,
    pub plan: PartPlan,
    pub content_type: String,
    pub crc32c: u32,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub state: SessionState,
    /// Part number to the CRC32C signed into its URL (the latest signing).
    pub signed: BTreeMap<u32, u32>,
}

#[derive(Debug, Clone)]
pub struct DynamoSessions {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoSessions {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoSessions {
            client,
            table: table.into(),
        }
    }
}

fn id(upload_id: &str) -> String {
    format!("upload#{upload_id}")
}

fn crc_value(crc: u32) -> AttributeValue {
    s(Checksum::Crc32c(crc).to_base64())
}

fn parse_crc(raw: &str) -> Result<u32, Error> {
    Checksum::parse(ChecksumAlgorithm::Crc32c, raw)
        .ok()
        .and_then(|c| c.crc32c())
        .ok_or_else(|| Error::CorruptRecord(format!("bad CRC32C {raw:?}")))
}

fn session(item: &Item) -> Result<Session, Error> {
    let signed = match item.get("parts") {
        Some(AttributeValue::M(parts)) => parts
            .iter()
            .map(|(number, value)| {
                let number: u32 = number
                    .parse()
                    .map_err(|_| Error::CorruptRecord(format!("part number {number:?}")))?;
                let crc = value
                    .as_s()
                    .map_err(|_| Error::CorruptRecord("part checksum is not a string".into()))?;
                Ok((number, parse_crc(crc)?))
            })
            .collect::<Result<BTreeMap<_, _>, Error>>()?,
        _ => BTreeMap::new(),
    };
    let state = string(item, "state")?;
    Ok(Session {
        upload_id: string(item, "upload_id")?,
        owner: string(item, "owner")?,
        key: string(item, "key")?,
        plan: PartPlan {
            size: number(item, "size")?,
            part_size: number(item, "part_size")?,
            part_count: number(item, "part_count")?,
        },
        content_type: string(item, "content_type")?,
        crc32c: parse_crc(&string(item, "checksum")?)?,
        created_at_ms: number(item, "created_at_ms")?,
        expires_at_ms: number(item, "expires_at_ms")?,
        state: SessionState::parse(&state)
            .ok_or_else(|| Error::CorruptRecord(format!("state {state:?}")))?,
        signed,
    })
}

impl Sessions for DynamoSessions {
    async fn create(&self, session: &Session) -> Result<(), Error> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("id", s(id(&session.upload_id)))
            .item("upload_id", s(&session.upload_id))
            .item("owner", s(&session.owner))
            .item("key", s(&session.key))
            .item("size", n(session.plan.size))
            .item("part_size", n(session.plan.part_size))
            .item("part_count", n(session.plan.part_count))
            .item("content_type", s(&session.content_type))
            .item("checksum", crc_value(session.crc32c))
            .item("created_at_ms", n(session.created_at_ms))
            .item("expires_at_ms", n(session.expires_at_ms))
            .item("ttl", n(session.expires_at_ms / 1000 + KEEP_EXPIRED_S))
            .item("state", s(session.state.as_str()))
            .item("parts", AttributeValue::M(HashMap::new()))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await
            .map_err(|e| Error::aws("PutItem", e))?;
        Ok(())
    }

    async fn get(&self, upload_id: &str) -> Result<Option<Session>, Error> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(id(upload_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::aws("GetItem", e))?;
        output.item.as_ref().map(session).transpose()
    }

    async fn record_signed(&self, upload_id: &str, parts: &[(u32, u32)]) -> Result<bool, Error> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id(upload_id)))
            .condition_expression("#state = :open")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":open", s(SessionState::Open.as_str()));
        let mut assignments = Vec::with_capacity(parts.len());
        for (i, (number, crc)) in parts.iter().enumerate() {
            assignments.push(format!("parts.#p{i} = :c{i}"));
            request = request
                .expression_attribute_names(format!("#p{i}"), number.to_string())
                .expression_attribute_values(format!(":c{i}"), crc_value(*crc));
        }
        let result = request
            .update_expression(format!("SET {}", assignments.join(", ")))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_conditional_failure(&err) => Ok(false),
            Err(err) => Err(Error::aws("UpdateItem", err)),
        }
    }

    async fn finish(&self, upload_id: &str, state: SessionState) -> Result<bool, Error> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id(upload_id)))
            .update_expression("SET #state = :state")
            .condition_expression("#state = :open")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(state.as_str()))
            .expression_attribute_values(":open", s(SessionState::Open.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_conditional_failure(&err) => Ok(false),
            Err(err) => Err(Error::aws("UpdateItem", err)),
        }
    }
}
