//! A small client of the upload API: uploads a file resumably with a progress bar, shows a
//! file's versions and reads the change feed.
//!
//!   upload-client --api URL upload FILE [--name NAME]     (token in UPLOAD_API_TOKEN)
//!   upload-client --api URL info NAME [--versions]
//!   upload-client --api URL download NAME [--out FILE]
//!   upload-client --api URL changes [--since CURSOR] [--prefix PREFIX]
//!   upload-client --api URL abort UPLOAD_ID
//!
//! Files larger than one part go up as a multipart upload whose state is kept in
//! `FILE.upload.json`: interrupt it (Ctrl-C, a lost connection, a crash) and run the same command
//! again to send only the parts S3 does not have. Smaller files go up in one signed PUT.
//! A download reads the URL the API signs (S3's, or the distribution's with signed access) into a
//! temporary file beside FILE, checks it against the checksum S3 recorded, then renames it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use upload_api::api::UploadMethod;
use upload_api::checksum::Checksum;
use upload_api::client::{upload_resumable, upload_single, ApiClient, Progress, UploadOptions};
use upload_api::record::StoredChecksum;

#[derive(Parser)]
#[command(about = "Uploads files through the upload API, resumably")]
struct Cli {
    /// The API's base URL (the function URL).
    #[arg(long, env = "UPLOAD_API_URL")]
    api: String,
    /// Bearer token (with AUTH_MODE=token).
    #[arg(long, env = "UPLOAD_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Uploads FILE under your prefix.
    Upload {
        file: PathBuf,
        /// Name under your prefix (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        /// Media type (default: from the file's extension).
        #[arg(long)]
        content_type: Option<String>,
        /// Where the resumable state is kept (default: FILE.upload.json).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Part size in bytes (5 MiB at least).
        #[arg(long, default_value_t = 8 * 1024 * 1024)]
        part_size: u64,
        /// Parts in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Shows the latest version of NAME (and every version with --versions).
    Info {
        name: String,
        #[arg(long)]
        versions: bool,
    },
    /// Downloads the latest version of NAME, checked against its recorded checksum.
    Download {
        name: String,
        /// Where to write it (default: NAME's last segment, in the current directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Reads the change feed.
    Changes {
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Aborts a multipart upload.
    Abort { upload_id: String },
}

fn content_type_of(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// Streams `url` into a temporary file beside `out`, checks the bytes against the checksum S3
/// reported for the version (SHA-256, or a multipart object's full-object CRC32C), then renames
/// it to `out`. Returns the length and whether a checksum was checked.
async fn fetch(
    url: &str,
    out: &Path,
    expected: Option<&StoredChecksum>,
) -> anyhow::Result<(u64, bool)> {
    use sha2::Digest;
    use tokio::io::AsyncWriteExt;
    let mut answer = reqwest::get(url).await?;
    let status = answer.status();
    anyhow::ensure!(status.is_success(), "the download answered {status}");
    let mut partial = out.as_os_str().to_owned();
    partial.push(".part");
    let partial = PathBuf::from(partial);
    let mut file = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("creating {}", partial.display()))?;
    let (mut sha256, mut crc32c, mut bytes) = (sha2::Sha256::new(), 0u32, 0u64);
    while let Some(chunk) = answer.chunk().await? {
        sha256.update(&chunk);
        crc32c = crc32c::crc32c_append(crc32c, &chunk);
        bytes += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.sync_all().await?;
    drop(file);
    let actual = match expected.map(|c| (c.algorithm.as_str(), c.kind.as_deref())) {
        Some(("sha256", _)) => Some(Checksum::Sha256(sha256.finalize().into())),
        Some(("crc32c", None | Some("FULL_OBJECT"))) => Some(Checksum::Crc32c(crc32c)),
        _ => None,
    };
    if let (Some(actual), Some(expected)) = (actual, expected) {
        if actual.to_base64() != expected.value {
            let _ = tokio::fs::remove_file(&partial).await;
            anyhow::bail!(
                "the bytes read have {} {}, the version {}: nothing written",
                expected.algorithm,
                actual.to_base64(),
                expected.value
            );
        }
    }
    tokio::fs::rename(&partial, out).await?;
    Ok((bytes, actual.is_some()))
}

fn print(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let client = ApiClient::new(cli.api, cli.token);
    match cli.command {
        Command::Upload {
            file,
            name,
            content_type,
            state,
            part_size,
            concurrency,
        } => {
            let me = client.me().await.context("asking the API who we are")?;
            let name = match name {
                Some(name) => name,
                None => file
                    .file_name()
                    .context("FILE has no file name")?
                    .to_string_lossy()
                    .into_owned(),
            };
            let key = format!("{}{name}", me.prefix);
            let content_type = content_type.unwrap_or_else(|| content_type_of(&file).to_owned());
            let size = std::fs::metadata(&file)
                .with_context(|| format!("reading {}", file.display()))?
                .len();
            if size <= part_size.min(me.max_single_bytes) {
                upload_single(&client, &file, &key, &content_type, UploadMethod::Put).await?;
                println!("uploaded {key} ({size} bytes) in one request");
                return Ok(());
            }
            let state = state.unwrap_or_else(|| {
                let mut path = file.clone().into_os_string();
                path.push(".upload.json");
                PathBuf::from(path)
            });
            let bar = ProgressBar::new(size);
            bar.set_style(ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
            )?);
            let progress = |p: Progress| match p {
                Progress::Started { total, already } => {
                    bar.set_length(total);
                    bar.set_position(already);
                    if already > 0 {
                        bar.set_message("resumed");
                    }
                }
                Progress::Part { bytes, .. } => bar.inc(bytes),
            };
            let options = UploadOptions {
                part_size,
                concurrency,
            };
            let upload = upload_resumable(
                &client,
                &file,
                &key,
                &content_type,
                &state,
                &options,
                &progress,
            );
            tokio::select! {
                result = upload => {
                    let uploaded = result.with_context(|| {
                        format!("upload stopped: run the same command again to resume (state in {})", state.display())
                    })?;
                    bar.finish_with_message("done");
                    println!(
                        "uploaded {} ({} bytes, CRC32C {}), {} parts sent{}",
                        uploaded.completed.key,
                        uploaded.completed.size,
                        uploaded.completed.checksum.value,
                        uploaded.parts_sent.len(),
                        if uploaded.resumed { " after resuming" } else { "" }
                    );
                }
                _ = tokio::signal::ctrl_c() => {
                    bar.abandon_with_message("interrupted");
                    anyhow::bail!("interrupted: run the same command again to resume (state in {})", state.display());
                }
            }
        }
        Command::Info { name, versions } => {
            let me = client.me().await?;
            print(
                &client
                    .file(&format!("{}{name}", me.prefix), versions)
                    .await?,
            )?;
        }
        Command::Download { name, out } => {
            let me = client.me().await?;
            let key = format!("{}{name}", me.prefix);
            let file = client.download(&key, None).await?;
            let download = file.download.context("the API answered no download URL")?;
            let out = match out {
                Some(out) => out,
                None => PathBuf::from(name.rsplit('/').next().unwrap_or(&name)),
            };
            let (bytes, checked) =
                fetch(&download.url, &out, file.latest.checksum.as_ref()).await?;
            println!(
                "downloaded {key} ({bytes} bytes, via {}, {}) to {}",
                download.via,
                if checked {
                    "checksum verified"
                } else {
                    "no full-object checksum recorded to verify"
                },
                out.display()
            );
        }
        Command::Changes { since, prefix } => {
            print(
                &client
                    .changes(prefix.as_deref(), since.as_deref(), None)
                    .await?,
            )?;
        }
        Command::Abort { upload_id } => {
            client.abort(&upload_id).await?;
            println!("aborted {upload_id}");
        }
    }
    Ok(())
}
