//! The whole pipeline on one machine. `scripts/demo` starts the local AWS stack and the functions
//! (through the Runtime Interface Emulator), then runs `local-pipeline run --play`.

mod catalogue;
mod concurrency;
mod edge;
mod esm;
mod flood;
mod http;
mod load;
mod metrics;
mod origin;
mod scenario;
mod viewer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    about = "The overseas-origin pipeline on one machine: sample origin, edge simulator, event source mappings, demo"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the sample domestic catalogue into a folder.
    Catalogue {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Serves the sample origin and the edge simulator, and feeds the queues to the functions.
    Run(Box<RunArgs>),
    /// The load run: many backfill messages (many keys, many duplicates) through the queue, the
    /// backfill function and a domestic origin that fails some requests; checks the invariants.
    Load(LoadArgs),
    /// The token flood: bad-token requests at the upload API while the backfill copies a batch,
    /// on a modelled account concurrency; with and without the upload API's reservation, and
    /// without a flood; checks the invariants and reports the backfill's throughput.
    Flood(FloodArgs),
    /// Serves the edge simulator alone, for the regional stacks in the environment (no event
    /// source mappings, no scenario): what bench/regions times.
    Edge(EdgeArgs),
}

#[derive(clap::Args)]
struct EdgeArgs {
    /// Port of a domestic origin already serving (the buckets' failover target).
    #[arg(long)]
    origin_port: u16,
    /// Port of the edge simulator (0: any free port).
    #[arg(long, default_value_t = 0)]
    edge_port: u16,
    /// Written with the simulator's port once it serves.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Invocation URL of an edge hook sandbox (repeat for several; none: no hook).
    #[arg(long = "edge-hook")]
    edge_hooks: Vec<String>,
    /// Turn the second regional stack on (REGION2, BUCKET_2, BACKFILL_QUEUE_URL_2 from the
    /// environment): the origins `bucket-2` and `domestic-2`.
    #[arg(long, requires = "viewer_function")]
    second_region: bool,
    #[command(flatten)]
    viewer: ViewerFunctionArgs,
    #[command(flatten)]
    s3_endpoints: S3Endpoints,
}

/// The viewer-request CloudFront Function's code and what runs it.
#[derive(clap::Args)]
struct ViewerFunctionArgs {
    /// The viewer-request CloudFront Function's code, run on every request (its routing to the
    /// nearest regional stack by `x-viewer-country`).
    #[arg(long)]
    viewer_function: Option<PathBuf>,
    /// What runs a CloudFront Function's code.
    #[arg(long, default_value = "tests/lib/cloudfront-function.js")]
    function_loader: PathBuf,
    /// Keeps the viewer function loaded in one Node.js process.
    #[arg(long, default_value = "tools/local-pipeline/viewer-function.js")]
    function_runner: PathBuf,
    /// Node.js 22, for the viewer function.
    #[arg(long, default_value = "node")]
    node: PathBuf,
}

/// Where each bucket origin's S3 requests go: a WAN link in front of the local S3, so that a
/// bucket far from the edge is far here too.
#[derive(clap::Args)]
struct S3Endpoints {
    /// The S3 endpoint of the bucket origin of a region (REGION=URL, repeat); others use the
    /// configured endpoint.
    #[arg(long = "s3-endpoint-for", value_parser = parse_endpoint_for)]
    endpoints: Vec<(String, String)>,
}

fn parse_endpoint_for(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((region, url))
            if !region.is_empty()
                && (url.starts_with("http://") || url.starts_with("https://")) =>
        {
            Ok((region.to_owned(), url.to_owned()))
        }
        _ => Err(format!(
            "{raw:?} is not REGION=URL such as eu-central-1=http://127.0.0.1:9000"
        )),
    }
}

impl S3Endpoints {
    /// The S3 client of a bucket origin: signing for its region, at its endpoint.
    fn bucket_client(&self, sdk: &aws_config::SdkConfig, region: &str) -> aws_sdk_s3::Client {
        let sdk = sdk
            .to_builder()
            .region(aws_sdk_s3::config::Region::new(region.to_owned()))
            .build();
        let client = shared::aws::s3_client(&sdk);
        match self.endpoints.iter().find(|(r, _)| r == region) {
            // On the client's own configuration: AWS_ENDPOINT_URL in the environment would win
            // over an endpoint set on the shared configuration.
            Some((_, url)) => aws_sdk_s3::Client::from_conf(
                client.config().to_builder().endpoint_url(url).build(),
            ),
            None => client,
        }
    }
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Where the load catalogue is written and served from.
    #[arg(long)]
    catalogue: PathBuf,
    /// Port of the domestic origin (the backfill function's allow-list names it).
    #[arg(long)]
    origin_port: u16,
    /// Invocation URL of the backfill function.
    #[arg(long)]
    backfill_function: String,
    /// Backfill messages to send.
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Distinct keys they name (fewer keys, more duplicates).
    #[arg(long, default_value_t = 400)]
    keys: usize,
    /// Share of origin requests answered 503.
    #[arg(long, default_value_t = 0.05)]
    origin_fail_rate: f64,
    /// Where to write the report (JSON).
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(clap::Args)]
struct FloodArgs {
    /// Where the batch's objects are written and served from.
    #[arg(long)]
    catalogue: PathBuf,
    /// Port of the domestic origin (the backfill function's allow-list names it).
    #[arg(long)]
    origin_port: u16,
    /// Invocation URL of a backfill execution environment (repeat: one poller each).
    #[arg(long = "backfill-function", required = true)]
    backfill_functions: Vec<String>,
    /// Invocation URL of an upload API execution environment (repeat: at least --account-limit).
    #[arg(long = "upload-api-function", required = true)]
    upload_api_functions: Vec<String>,
    /// The account's concurrency limit (scaled down: 1000 in a real account).
    #[arg(long, default_value_t = 12)]
    account_limit: usize,
    /// What a reservation must leave unreserved (scaled down: 100 in a real account).
    #[arg(long, default_value_t = 4)]
    min_unreserved: usize,
    /// The upload API's reservation.
    #[arg(long, default_value_t = 4)]
    reservation: usize,
    /// The flood's connections, each sending one request after another.
    #[arg(long, default_value_t = 48)]
    connections: usize,
    /// Objects the backfill copies in each round.
    #[arg(long, default_value_t = 120)]
    objects: usize,
    /// Size of each object.
    #[arg(long, default_value_t = 262_144)]
    object_bytes: usize,
    /// Rounds of the three cases, interleaved.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The longest a round's batch is timed (seconds): a starved backfill's round ends there.
    #[arg(long, default_value_t = 60)]
    round_cap: u64,
    /// Where to write the report (JSON).
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum TriggerArg {
    OriginRequest,
    OriginResponse,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The catalogue the sample domestic origin serves.
    #[arg(long)]
    catalogue: PathBuf,
    /// Port of the sample domestic origin (the backfill function's allow-list names it).
    #[arg(long)]
    origin_port: u16,
    /// Port of the edge simulator (0: any free port).
    #[arg(long, default_value_t = 0)]
    edge_port: u16,
    /// Invocation URL of an edge hook sandbox (repeat for several).
    #[arg(long = "edge-hook", required = true)]
    edge_hooks: Vec<String>,
    /// Which trigger the hook is wired as.
    #[arg(long, value_enum, default_value = "origin-request")]
    trigger: TriggerArg,
    /// Invocation URL of the backfill function.
    #[arg(long)]
    backfill_function: String,
    /// Invocation URL of the image processor.
    #[arg(long)]
    image_function: String,
    /// The backfill function's log (JSON lines), read for its outcomes.
    #[arg(long)]
    backfill_log: PathBuf,
    /// Key prefix of the thumbnails.
    #[arg(long, default_value = "thumbnails/")]
    thumbnail_prefix: String,
    /// Turn the edge cache on.
    #[arg(long)]
    cache: bool,
    /// Play the demo scenario, print the report and exit (otherwise serve until interrupted).
    #[arg(long)]
    play: bool,
    /// An edge sandbox's log (repeat), searched for viewer credentials by the scenario.
    #[arg(long = "edge-log")]
    edge_logs: Vec<PathBuf>,
    /// Viewers in the scenario's burst.
    #[arg(long, default_value_t = 50)]
    burst: usize,
    /// Send the revalidation schedule's sweep this often (e.g. 10s; none by default).
    #[arg(long, value_parser = parse_duration)]
    sweep_every: Option<Duration>,
    /// The invalidation queue's batching window.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    invalidation_window: Duration,
    #[command(flatten)]
    viewer: ViewerFunctionArgs,
    #[command(flatten)]
    s3_endpoints: S3Endpoints,
    /// Invocation URL of the second regional stack's backfill function: turns that stack on
    /// (REGION2, BUCKET_2, BACKFILL_QUEUE_URL_2, IMAGE_QUEUE_URL_2 from the environment), with
    /// the origins `bucket-2` and `domestic-2`.
    #[arg(
        long,
        requires_all = ["viewer_function", "image_function_2", "backfill_log_2"]
    )]
    backfill_function_2: Option<String>,
    /// Invocation URL of the second regional stack's image processor.
    #[arg(long)]
    image_function_2: Option<String>,
    /// The second regional stack's backfill log.
    #[arg(long)]
    backfill_log_2: Option<PathBuf>,
    /// backfill-ctl: after the two-region step, file the hook's and the backfills' EMF lines in
    /// CloudWatch and print `backfill-ctl status` per region.
    #[arg(long, requires = "backfill_function_2")]
    backfill_ctl: Option<PathBuf>,
}

/// A queue's URL as AWS names it (the hook takes the queue's region from it), from a local
/// stand-in's URL of the same queue: `https://sqs.<region>.amazonaws.com/<account>/<name>`.
fn aws_queue_url(local: &str, region: &str) -> Result<String> {
    let mut segments = local.trim_end_matches('/').rsplit('/');
    let (Some(name), Some(account)) = (segments.next(), segments.next()) else {
        anyhow::bail!("{local:?} is not a queue URL");
    };
    Ok(format!(
        "https://sqs.{region}.amazonaws.com/{account}/{name}"
    ))
}

/// The hook's configuration for one regional stack, as the domestic origin's custom headers (the
/// refused prefixes as the templates set them: UploadPrefix and ThumbnailPrefix).
fn hook_headers(queue_url: String, bucket: &str) -> Vec<(String, String)> {
    vec![
        ("X-Backfill-Queue-Url".into(), queue_url),
        ("X-Backfill-Bucket".into(), bucket.into()),
        ("X-Backfill-Send-Budget".into(), "1s".into()),
        (
            "X-Backfill-Refused-Prefixes".into(),
            "uploads/,thumbnails/".into(),
        ),
    ]
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    shared::config::parse_duration(raw)
        .ok_or_else(|| format!("{raw:?} is not a duration such as 10s"))
}

/// The second regional stack's resources and functions.
struct SecondStack {
    region: String,
    bucket: String,
    backfill_queue: String,
    image_queue: String,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    backfill_function: String,
}

/// One regional stack as the distribution sees it.
struct Slot {
    region: String,
    bucket: String,
    backfill_queue: String,
}

/// The distribution's origins for the regional stacks (slot 1 first): slot 1's bucket and
/// domestic origin (the default group), slot N's `bucket-N` and `domestic-N`, and
/// `domestic-direct`; with the viewer function's `RegionalOrigins` for them.
fn distribution(
    slots: &[Slot],
    origin_port: u16,
    sdk: &aws_config::SdkConfig,
    endpoints: &S3Endpoints,
) -> Result<(HashMap<String, edge::OriginConfig>, String)> {
    let domestic = |headers| edge::OriginConfig::Domestic {
        host: "127.0.0.1".into(),
        port: origin_port,
        headers,
    };
    let mut origins = HashMap::from([("domestic-direct".to_owned(), domestic(vec![]))]);
    let mut regional_origins = vec![];
    for (index, slot) in slots.iter().enumerate() {
        let number = index + 1;
        let (bucket_id, domestic_id) = if number == 1 {
            (
                edge::DEFAULT_GROUP[0].to_owned(),
                edge::DEFAULT_GROUP[1].to_owned(),
            )
        } else {
            (format!("bucket-{number}"), format!("domestic-{number}"))
        };
        origins.insert(
            bucket_id,
            edge::OriginConfig::Bucket {
                bucket: slot.bucket.clone(),
                region: slot.region.clone(),
                s3: endpoints.bucket_client(sdk, &slot.region),
            },
        );
        origins.insert(
            domestic_id,
            domestic(hook_headers(
                aws_queue_url(&slot.backfill_queue, &slot.region)?,
                &slot.bucket,
            )),
        );
        regional_origins.push(format!("{number}:{}", slot.region));
    }
    Ok((origins, regional_origins.join(",")))
}

impl ViewerFunctionArgs {
    /// The viewer function, started with the template's parameters for these origins (if a code
    /// was given).
    async fn start(
        &self,
        thumbnail_prefix: &str,
        regional_origins: &str,
        origins: &HashMap<String, edge::OriginConfig>,
    ) -> Result<Option<viewer::ViewerFunction>> {
        let Some(code) = &self.viewer_function else {
            return Ok(None);
        };
        let function = viewer::ViewerFunction::start(viewer::FunctionSpec {
            node: self.node.clone(),
            runner: self.function_runner.clone(),
            loader: self.function_loader.clone(),
            code: code.clone(),
            parameters: vec![
                ("ThumbnailPrefix".into(), thumbnail_prefix.to_owned()),
                ("ThumbnailFormats".into(), "none".into()),
                ("RegionalOrigins".into(), regional_origins.to_owned()),
                ("ViewerRoutes".into(), String::new()),
                ("OfflineRegions".into(), String::new()),
            ],
            origins: origins.keys().cloned().collect(),
        })
        .await?;
        Ok(Some(function))
    }
}

fn var(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| {
        format!("{name} is not set: source the local stack's environment (scripts/local-stack env)")
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Catalogue { dir } => catalogue::generate(&dir),
        Command::Run(args) => run(*args).await,
        Command::Load(args) => load(args).await,
        Command::Flood(args) => token_flood(args).await,
        Command::Edge(args) => serve_edge(args).await,
    }
}

async fn load(args: LoadArgs) -> Result<()> {
    let sdk = shared::aws::load_config().await;
    let sqs = shared::aws::sqs_client(&sdk);
    let queue_url = var("BACKFILL_QUEUE_URL")?;
    load::catalogue(&args.catalogue, args.keys)?;
    let (_, origin_hits) = origin::start(
        args.catalogue.clone(),
        args.origin_port,
        args.origin_fail_rate,
    )
    .await?;
    let (_task, deliveries) = esm::start(esm::Mapping {
        name: "backfill",
        sqs: sqs.clone(),
        queue_url: queue_url.clone(),
        function_url: args.backfill_function,
        batch_size: 10,
        batching_window: std::time::Duration::ZERO,
        sandbox: esm::Sandbox::default(),
        concurrency: None,
    })
    .await?;
    let report = load::LoadRun {
        sqs,
        s3: shared::aws::s3_client(&sdk),
        bucket: var("BUCKET")?,
        queue_url,
        dlq_url: var("BACKFILL_DLQ_URL")?,
        origin_port: args.origin_port,
        messages: args.messages,
        keys: args.keys,
        deliveries,
        origin_hits,
    }
    .play(&args.catalogue)
    .await?;
    if let Some(path) = args.report {
        std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn token_flood(args: FloodArgs) -> Result<()> {
    let sdk = shared::aws::load_config().await;
    flood::catalogue(&args.catalogue, args.objects, args.object_bytes)?;
    origin::start(args.catalogue.clone(), args.origin_port, 0.0).await?;
    let report = flood::FloodRun {
        sqs: shared::aws::sqs_client(&sdk),
        s3: shared::aws::s3_client(&sdk),
        bucket: var("BUCKET")?,
        queue_url: var("BACKFILL_QUEUE_URL")?,
        dlq_url: var("BACKFILL_DLQ_URL")?,
        origin_port: args.origin_port,
        backfill_sandboxes: args.backfill_functions,
        upload_api_sandboxes: args.upload_api_functions,
        account_limit: args.account_limit,
        min_unreserved: args.min_unreserved,
        reservation: args.reservation,
        connections: args.connections,
        objects: args.objects,
        object_bytes: args.object_bytes,
        rounds: args.rounds,
        round_cap: std::time::Duration::from_secs(args.round_cap),
    }
    .play(&args.catalogue)
    .await?;
    let text = serde_json::to_string_pretty(&report)? + "\n";
    match args.report {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(())
}

async fn serve_edge(args: EdgeArgs) -> Result<()> {
    let sdk = shared::aws::load_config().await;
    let region = sdk
        .region()
        .map(ToString::to_string)
        .unwrap_or_else(|| "us-east-1".into());
    let mut slots = vec![Slot {
        region,
        bucket: var("BUCKET")?,
        backfill_queue: var("BACKFILL_QUEUE_URL")?,
    }];
    if args.second_region {
        slots.push(Slot {
            region: var("REGION2")?,
            bucket: var("BUCKET_2")?,
            backfill_queue: var("BACKFILL_QUEUE_URL_2")?,
        });
    }
    let (origins, regional_origins) =
        distribution(&slots, args.origin_port, &sdk, &args.s3_endpoints)?;
    let thumbnail_prefix = "thumbnails/";
    let viewer_function = args
        .viewer
        .start(thumbnail_prefix, &regional_origins, &origins)
        .await?;
    let (edge_addr, _) = edge::start(
        edge::EdgeConfig {
            hooks: args.edge_hooks,
            trigger: edge::Trigger::OriginRequest,
            origins,
            failover_statuses: vec![403, 404, 500, 502, 503, 504],
            thumbnail_prefix: thumbnail_prefix.into(),
            viewer_function,
            cache: false,
        },
        args.edge_port,
    )
    .await?;
    if let Some(path) = &args.port_file {
        std::fs::write(path, edge_addr.port().to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("edge simulator http://{edge_addr} (regional stacks {regional_origins}; cache off)");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn run(args: RunArgs) -> Result<()> {
    let bucket = var("BUCKET")?;
    let backfill_queue = var("BACKFILL_QUEUE_URL")?;
    let part_queue = var("PART_QUEUE_URL")?;
    let invalidation_queue = var("INVALIDATION_QUEUE_URL")?;
    let image_queue = var("IMAGE_QUEUE_URL")?;
    let sdk = shared::aws::load_config().await;
    let s3 = shared::aws::s3_client(&sdk);
    let sqs = shared::aws::sqs_client(&sdk);
    let region = sdk
        .region()
        .map(ToString::to_string)
        .unwrap_or_else(|| "us-east-1".into());

    catalogue::generate(&args.catalogue)?;
    let (origin_addr, origin_hits) =
        origin::start(args.catalogue.clone(), args.origin_port, 0.0).await?;
    // The second regional stack: its clients sign for its region (moto keeps regions apart).
    let second = match &args.backfill_function_2 {
        None => None,
        Some(function) => {
            let region = var("REGION2")?;
            let sdk = sdk
                .to_builder()
                .region(aws_sdk_s3::config::Region::new(region.clone()))
                .build();
            Some(SecondStack {
                bucket: var("BUCKET_2")?,
                backfill_queue: var("BACKFILL_QUEUE_URL_2")?,
                image_queue: var("IMAGE_QUEUE_URL_2")?,
                s3: shared::aws::s3_client(&sdk),
                sqs: shared::aws::sqs_client(&sdk),
                backfill_function: function.clone(),
                region,
            })
        }
    };
    let mut slots = vec![Slot {
        region: region.clone(),
        bucket: bucket.clone(),
        backfill_queue: backfill_queue.clone(),
    }];
    if let Some(stack) = &second {
        slots.push(Slot {
            region: stack.region.clone(),
            bucket: stack.bucket.clone(),
            backfill_queue: stack.backfill_queue.clone(),
        });
    }
    let (origins, regional_origins) =
        distribution(&slots, origin_addr.port(), &sdk, &args.s3_endpoints)?;
    let viewer_function = args
        .viewer
        .start(&args.thumbnail_prefix, &regional_origins, &origins)
        .await?;
    let (edge_addr, edge_stats) = edge::start(
        edge::EdgeConfig {
            hooks: args.edge_hooks.clone(),
            trigger: match args.trigger {
                TriggerArg::OriginRequest => edge::Trigger::OriginRequest,
                TriggerArg::OriginResponse => edge::Trigger::OriginResponse,
            },
            origins,
            failover_statuses: vec![403, 404, 500, 502, 503, 504],
            thumbnail_prefix: args.thumbnail_prefix.clone(),
            viewer_function,
            cache: args.cache,
        },
        args.edge_port,
    )
    .await?;
    // The backfill function's two mappings, as in template.yaml: the backfill queue in batches,
    // the part queue one task at a time; both feed its one emulator.
    let backfill_sandbox = esm::Sandbox::default();
    let (_backfill_task, backfill) = esm::start(esm::Mapping {
        name: "backfill",
        sqs: sqs.clone(),
        queue_url: backfill_queue.clone(),
        function_url: args.backfill_function.clone(),
        batch_size: 10,
        batching_window: Duration::ZERO,
        sandbox: backfill_sandbox.clone(),
        concurrency: None,
    })
    .await?;
    // Changed paths, gathered for a window and invalidated in one call (template.yaml's
    // InvalidationQueue mapping, whose window is a minute, shortened here).
    let (_invalidation_task, invalidations) = esm::start(esm::Mapping {
        name: "backfill invalidations",
        sqs: sqs.clone(),
        queue_url: invalidation_queue,
        function_url: args.backfill_function.clone(),
        batch_size: 1000,
        batching_window: args.invalidation_window,
        sandbox: backfill_sandbox.clone(),
        concurrency: None,
    })
    .await?;
    // The revalidation schedule (template.yaml's EventBridge schedule, which targets the part
    // queue): a sweep every period.
    if let Some(period) = args.sweep_every {
        let sqs = sqs.clone();
        let queue = part_queue.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                let body = serde_json::json!({
                    "version": 1, "kind": "sweep", "period_seconds": period.as_secs().max(1),
                });
                let sent = sqs
                    .send_message()
                    .queue_url(&queue)
                    .message_body(body.to_string())
                    .send()
                    .await;
                if let Err(err) = sent {
                    eprintln!("revalidation schedule: {err}");
                }
            }
        });
    }
    let (_part_task, parts) = esm::start(esm::Mapping {
        name: "backfill parts",
        sqs: sqs.clone(),
        queue_url: part_queue.clone(),
        function_url: args.backfill_function.clone(),
        batch_size: 1,
        batching_window: Duration::ZERO,
        sandbox: backfill_sandbox,
        concurrency: None,
    })
    .await?;
    let (_image_task, images) = esm::start(esm::Mapping {
        name: "image-processor",
        sqs: sqs.clone(),
        queue_url: image_queue,
        function_url: args.image_function.clone(),
        batch_size: 5,
        batching_window: Duration::ZERO,
        sandbox: esm::Sandbox::default(),
        concurrency: None,
    })
    .await?;
    // The second regional stack's mappings: its backfill queue to its backfill function, its
    // image queue (its bucket's notifications) to its image processor.
    let mut second_region = None;
    if let Some(stack) = &second {
        let (_, backfill) = esm::start(esm::Mapping {
            name: "backfill (second region)",
            sqs: stack.sqs.clone(),
            queue_url: stack.backfill_queue.clone(),
            function_url: stack.backfill_function.clone(),
            batch_size: 10,
            batching_window: Duration::ZERO,
            sandbox: esm::Sandbox::default(),
            concurrency: None,
        })
        .await?;
        let (_, images) = esm::start(esm::Mapping {
            name: "image-processor (second region)",
            sqs: stack.sqs.clone(),
            queue_url: stack.image_queue.clone(),
            function_url: args.image_function_2.clone().unwrap_or_default(),
            batch_size: 5,
            batching_window: Duration::ZERO,
            sandbox: esm::Sandbox::default(),
            concurrency: None,
        })
        .await?;
        second_region = Some(scenario::RegionalStack {
            region: stack.region.clone(),
            bucket: stack.bucket.clone(),
            s3: stack.s3.clone(),
            backfill,
            images,
            backfill_log: args.backfill_log_2.clone().unwrap_or_default(),
        });
    }

    println!("Overseas origin backfill: the pipeline on this machine");
    println!(
        "   domestic origin  http://{origin_addr} ({} catalogue entries)",
        catalogue::ENTRIES.len()
    );
    for entry in catalogue::ENTRIES {
        println!("                    /{}: {}", entry.path, entry.description);
    }
    println!(
        "   edge simulator   http://{edge_addr} (origin group: bucket {bucket}, then the domestic origin; hook as {}, {} sandboxes{})",
        match args.trigger {
            TriggerArg::OriginRequest => "origin-request",
            TriggerArg::OriginResponse => "origin-response",
        },
        args.edge_hooks.len(),
        if args.cache { ", cache on" } else { "" }
    );
    println!(
        "   event sources    backfill queue (batches of 10) and part queue (one task at a time) -> backfill function; image queue -> image processor"
    );
    if let Some(code) = &args.viewer.viewer_function {
        println!(
            "   viewer function  {} on every request (regional stacks {regional_origins}; the viewer's country from {})",
            code.display(),
            edge::VIEWER_COUNTRY
        );
    }
    if let Some(stack) = &second {
        println!(
            "   second region    {}: bucket {}, its backfill queue -> its backfill function, its image queue -> its image processor",
            stack.region, stack.bucket
        );
    }

    if args.play {
        scenario::Scenario {
            edge: format!("http://{edge_addr}"),
            catalogue: args.catalogue,
            s3,
            bucket,
            thumbnail_prefix: args.thumbnail_prefix,
            origin_hits,
            backfill,
            parts,
            images,
            backfill_log: args.backfill_log,
            edge_stats,
            burst: args.burst,
            edge_logs: args.edge_logs,
            origin_response: matches!(args.trigger, TriggerArg::OriginResponse),
            sqs,
            backfill_queue,
            origin_port: origin_addr.port(),
            invalidations,
            status: args.backfill_ctl.map(|backfill_ctl| scenario::StatusTools {
                backfill_ctl,
                cloudwatch: aws_sdk_cloudwatch::config::Builder::from(&sdk),
            }),
            region,
            second_region,
        }
        .play()
        .await
    } else {
        println!("   serving until interrupted (Ctrl-C)");
        tokio::signal::ctrl_c().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_given_for_a_region() {
        assert_eq!(
            parse_endpoint_for("eu-central-1=http://127.0.0.1:9000").unwrap(),
            ("eu-central-1".into(), "http://127.0.0.1:9000".into())
        );
        for bad in [
            "eu-central-1",
            "=http://127.0.0.1:9000",
            "eu-central-1=127.0.0.1:9000",
        ] {
            assert!(parse_endpoint_for(bad).is_err(), "{bad}");
        }
    }
}
