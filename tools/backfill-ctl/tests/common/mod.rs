//! The local stack for the CLI's tests: each test makes its own queues and bucket (other suites
//! use the shared ones at the same time), and runs the real binary against them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};

use aws_sdk_dynamodb::types::{AttributeValue, BillingMode, GlobalSecondaryIndex};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use shared::aws;

pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests through scripts/test, or start the local stack \
             (scripts/local-stack up) and export .local/env"
        )
    })
}

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code of {self:#?}");
        self
    }

    pub fn stdout_has(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}: {self:#?}"
        );
        self
    }

    pub fn stderr_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}: {self:#?}"
        );
        self
    }
}

/// Runs `backfill-ctl` with `args`, feeding `stdin`.
pub fn ctl(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_backfill-ctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    if let Some(text) = stdin {
        input
            .write_all(text.as_bytes())
            .expect("stdin takes the input");
    }
    drop(input);
    let output = child.wait_with_output().expect("the binary ends");
    Run {
        code: output.status.code().expect("the binary exits with a code"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn unique(name: &str) -> String {
    format!("ctl-{name}-{:08x}", fastrand::u32(..))
}

/// A file in the temporary directory, removed on drop.
pub struct TempFile(pub std::path::PathBuf);

impl TempFile {
    pub fn new(contents: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("{}.txt", unique("keys")));
        std::fs::write(&path, contents).expect("the temporary file is written");
        TempFile(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub struct Stack {
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub endpoint: String,
}

/// A queue and the DLQ its RedrivePolicy names.
pub struct QueuePair {
    pub url: String,
    pub dlq_url: String,
}

impl Stack {
    pub async fn new() -> Self {
        let endpoint = var("AWS_ENDPOINT_URL");
        var("AWS_REGION");
        let config = aws::load_config().await;
        Stack {
            sqs: aws::sqs_client(&config),
            s3: aws::s3_client(&config),
            dynamodb: aws::dynamodb_client(&config),
            endpoint,
        }
    }

    pub async fn queue(&self, name: &str, fifo: bool, redrive_to: Option<&str>) -> String {
        let mut request = self.sqs.create_queue().queue_name(if fifo {
            format!("{name}.fifo")
        } else {
            name.to_owned()
        });
        if fifo {
            request = request.attributes(QueueAttributeName::FifoQueue, "true");
        }
        if let Some(dlq_url) = redrive_to {
            let attributes = self
                .sqs
                .get_queue_attributes()
                .queue_url(dlq_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .expect("the DLQ has attributes");
            let arn = &attributes.attributes().expect("attributes")[&QueueAttributeName::QueueArn];
            request = request.attributes(
                QueueAttributeName::RedrivePolicy,
                format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":5}}"#),
            );
        }
        request
            .send()
            .await
            .expect("the queue is created")
            .queue_url()
            .expect("a queue URL")
            .to_owned()
    }

    pub async fn queue_pair(&self, name: &str, fifo: bool) -> QueuePair {
        let name = unique(name);
        let dlq_url = self.queue(&format!("{name}-dlq"), fifo, None).await;
        let url = self.queue(&name, fifo, Some(&dlq_url)).await;
        QueuePair { url, dlq_url }
    }

    pub async fn delete_queues(&self, pair: &QueuePair) {
        for url in [&pair.url, &pair.dlq_url] {
            let _ = self.sqs.delete_queue().queue_url(url).send().await;
        }
    }

    pub async fn send(&self, url: &str, body: &str) {
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .expect("the message is sent");
    }

    /// Every message on the queue (hidden for a minute once received).
    pub async fn receive_all(&self, url: &str) -> Vec<Message> {
        let mut all = Vec::new();
        loop {
            let output = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .expect("the queue is read");
            let messages = output.messages.unwrap_or_default();
            if messages.is_empty() {
                return all;
            }
            all.extend(messages);
        }
    }

    /// Every message on the queue in the order received, each deleted once received (so that a
    /// FIFO queue delivers the next of its group).
    pub async fn drain(&self, url: &str) -> Vec<Message> {
        let mut all = Vec::new();
        loop {
            let messages = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .expect("the queue is read")
                .messages
                .unwrap_or_default();
            if messages.is_empty() {
                return all;
            }
            for message in &messages {
                self.sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(message.receipt_handle().expect("a receipt handle"))
                    .send()
                    .await
                    .expect("the message is deleted");
            }
            all.extend(messages);
        }
    }

    /// ApproximateNumberOfMessages and ApproximateNumberOfMessagesNotVisible.
    pub async fn depth(&self, url: &str) -> (u64, u64) {
        let output = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("the queue has attributes");
        let attributes: HashMap<QueueAttributeName, String> =
            output.attributes().cloned().unwrap_or_default();
        let count = |name| attributes[&name].parse().expect("a count");
        (
            count(QueueAttributeName::ApproximateNumberOfMessages),
            count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// A bucket of the test's own: its writes notify no shared queue.
    pub async fn bucket(&self) -> String {
        let name = unique("bucket");
        self.s3
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .expect("the bucket is created");
        name
    }

    pub async fn put(&self, bucket: &str, key: &str, body: &[u8], content_type: &str) {
        self.put_with_metadata(bucket, key, body, content_type, &[])
            .await;
    }

    pub async fn put_with_metadata(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        content_type: &str,
        metadata: &[(&str, &str)],
    ) {
        let mut request = self
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body.to_vec()));
        for (name, value) in metadata {
            request = request.metadata(*name, *value);
        }
        request.send().await.expect("the object is written");
    }

    pub async fn delete_bucket(&self, bucket: &str) {
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .expect("the bucket is listed");
        for object in listed.contents() {
            let _ = self
                .s3
                .delete_object()
                .bucket(bucket)
                .key(object.key().unwrap_or_default())
                .send()
                .await;
        }
        let _ = self.s3.delete_bucket().bucket(bucket).send().await;
    }
}

impl Stack {
    /// A freshness table of the test's own, made as the local stack's (`FRESHNESS_TABLE`) is:
    /// the same key, attributes and indexes, and none of the items other suites write.
    pub async fn freshness_table(&self) -> String {
        let model = self
            .dynamodb
            .describe_table()
            .table_name(var("FRESHNESS_TABLE"))
            .send()
            .await
            .expect("the local stack has a freshness table")
            .table
            .expect("a table description");
        let indexes = model
            .global_secondary_indexes()
            .iter()
            .map(|index| {
                GlobalSecondaryIndex::builder()
                    .set_index_name(index.index_name().map(str::to_owned))
                    .set_key_schema(Some(index.key_schema().to_vec()))
                    .set_projection(index.projection().cloned())
                    .build()
                    .expect("name and key schema are set")
            })
            .collect();
        let name = unique("freshness");
        self.dynamodb
            .create_table()
            .table_name(&name)
            .set_attribute_definitions(Some(model.attribute_definitions().to_vec()))
            .set_key_schema(Some(model.key_schema().to_vec()))
            .set_global_secondary_indexes(Some(indexes))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .expect("the table is created");
        name
    }

    pub async fn put_item(&self, table: &str, item: &[(&str, AttributeValue)]) {
        self.dynamodb
            .put_item()
            .table_name(table)
            .set_item(Some(
                item.iter()
                    .map(|(name, value)| ((*name).to_owned(), value.clone()))
                    .collect(),
            ))
            .send()
            .await
            .expect("the item is written");
    }

    pub async fn delete_table(&self, table: &str) {
        let _ = self.dynamodb.delete_table().table_name(table).send().await;
    }
}

/// A plain HTTP server on 127.0.0.1 that answers GET `path` with `body` and anything else with
/// 404, for as long as the test process runs. Answers its URL.
pub fn serve(path: &'static str, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
    let address = listener.local_addr().expect("the bound address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("a second handle"));
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let asked = request_line.split(' ').nth(1).unwrap_or_default();
            let (status, body) = if asked == path {
                ("200 OK", body)
            } else {
                ("404 Not Found", "not found")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{address}")
}
