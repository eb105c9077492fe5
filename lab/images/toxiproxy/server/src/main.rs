//! `toxiproxy`: a TCP fault-injection proxy server answering Shopify Toxiproxy's REST API (2.12.0),
//! for machines where the official image cannot be pulled. See README.md.

mod api;
mod cli;
mod collection;
mod conn;
mod gojson;
mod link;
mod log;
mod metrics;
mod model;
mod net;
mod proxy;
mod random;
mod toxics;

use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

fn main() -> ExitCode {
    let options = match cli::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("{err}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if options.help {
        eprintln!("{}", cli::USAGE);
        return ExitCode::SUCCESS;
    }
    if options.print_version {
        println!(
            "toxiproxy-server version {} (lab implementation {})",
            api::TOXIPROXY_VERSION,
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    log::init(std::env::var("LOG_LEVEL").ok().as_deref());
    for warning in &options.warnings {
        warn!("{warning}");
    }
    if let Some(seed) = options.seed {
        random::seed(seed as u64);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            error!("cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!("{err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: cli::Options) -> Result<(), String> {
    let metrics = Arc::new(metrics::Metrics::new(options.proxy_metrics, options.runtime_metrics));
    if options.runtime_metrics {
        warn!(
            "-runtime-metrics: there are no Go runtime metrics here; /metrics serves the proxy metrics only"
        );
    }
    let app = Arc::new(api::App::new(metrics));
    info!(
        "Starting Toxiproxy-compatible server: API {} (lab implementation {})",
        api::TOXIPROXY_VERSION,
        env!("CARGO_PKG_VERSION")
    );
    if let Some(path) = &options.config {
        app.populate_from_file(path).await;
    }
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    let address = net::join_host_port(&options.host, &options.port);
    let listener = net::bind(&address).await?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    info!("API listening on {local} (http://{address})");
    let (shutdown, shutdown_requested) = watch::channel(false);
    let server = tokio::spawn(api::serve(listener, app, shutdown_requested));
    tokio::select! {
        _ = terminate.recv() => info!("SIGTERM: shutdown started"),
        _ = interrupt.recv() => info!("SIGINT: shutdown started"),
    }
    let _ = shutdown.send(true);
    let _ = server.await;
    info!("Shutdown finished");
    Ok(())
}
