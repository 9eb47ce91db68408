//! Cold starts through a backend, for bench/containerd.sh: each
//! round creates a worker (until its `/health` answers), invokes it once and
//! destroys it; then `--scale` workers are created at once and each invoked
//! once. Prints one figure per line.
//!
//!   coldstart docker <image> [rounds] [scale]       on the host (loopback ports)
//!   coldstart containerd <image> [rounds] [scale]   inside the runtime node
//!
//! containerd mode reads the agent's variables: ESB_CNI_CONF_FILE,
//! ESB_CNI_BIN_DIR, ESB_NODE_STATE_DIR, ESB_BENCH_INSECURE_REGISTRY (a
//! registry spoken to over plain HTTP). ESB_LOG=esb_agent=debug logs the
//! time of each step of every create.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use esb_agent::backend::containerd::{ContainerdBackend, ContainerdConfig};
use esb_agent::backend::docker::{AddressMode, DockerBackend, DockerConfig};
use esb_agent::proto::CreateWorker;
use esb_agent::Backend;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // ESB_LOG=esb_agent=debug shows each create's steps.
    if let Ok(filter) = std::env::var("ESB_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, image) = match args.as_slice() {
        [mode, image, ..] => (mode.as_str(), image.clone()),
        _ => anyhow::bail!("usage: coldstart docker|containerd <image> [rounds] [scale]"),
    };
    let rounds: usize = args.get(2).map_or(Ok(5), |r| r.parse())?;
    let scale: usize = args.get(3).map_or(Ok(0), |s| s.parse())?;
    let node = format!("bench-{}", std::process::id());
    match mode {
        "docker" => {
            let mut config = DockerConfig::new(node.clone(), node);
            config.address_mode = AddressMode::Loopback;
            let backend = Arc::new(DockerBackend::connect(config).await?);
            let result = bench(mode, &backend, &image, rounds, scale).await;
            backend.close().await;
            result
        }
        "containerd" => {
            let mut config = ContainerdConfig::new(node.clone(), node);
            let var = |name: &str| std::env::var(name).ok();
            if let Some(v) = var("ESB_CNI_CONF_FILE") {
                config.cni_conf_file = v.into();
            }
            if let Some(v) = var("ESB_CNI_BIN_DIR") {
                config.cni_bin_dir = v.into();
            }
            if let Some(v) = var("ESB_NODE_STATE_DIR") {
                config.state_dir = v.into();
            }
            if let Some(v) = var("ESB_BENCH_INSECURE_REGISTRY") {
                config.insecure_registries = vec![v];
            }
            let backend = Arc::new(ContainerdBackend::connect(config).await?);
            let result = bench(mode, &backend, &image, rounds, scale).await;
            backend.close().await;
            result
        }
        other => anyhow::bail!("unknown backend {other:?}"),
    }
}

fn spec(image: &str, worker_id: String) -> CreateWorker {
    CreateWorker {
        worker_id,
        function: "bench".into(),
        image: image.to_owned(),
        memory_mb: 256,
        timeout_seconds: 30,
        env: HashMap::new(),
        command: Vec::new(),
        owner: "bench".into(),
    }
}

async fn bench<B: Backend>(
    mode: &str,
    backend: &Arc<B>,
    image: &str,
    rounds: usize,
    scale: usize,
) -> anyhow::Result<()> {
    // Warm-up: the image is pulled (containerd) and the page cache filled.
    let w = backend.create(spec(image, "warmup".into())).await?;
    invoke(&w.address).await?;
    backend.destroy("warmup").await?;

    let mut ready = Vec::new();
    let mut total = Vec::new();
    for round in 0..rounds {
        let id = format!("cold-{round}");
        let started = Instant::now();
        let w = backend.create(spec(image, id.clone())).await?;
        let created = started.elapsed();
        invoke(&w.address).await?;
        let invoked = started.elapsed();
        backend.destroy(&id).await?;
        ready.push(created);
        total.push(invoked);
    }
    println!(
        "{mode:<10} create->ready             p50 {:>6.1} ms  min {:>6.1} ms  ({rounds} rounds)",
        ms(median(&mut ready)),
        ms(ready.iter().min().copied().unwrap_or_default())
    );
    println!(
        "{mode:<10} create->first invoke      p50 {:>6.1} ms  min {:>6.1} ms  ({rounds} rounds)",
        ms(median(&mut total)),
        ms(total.iter().min().copied().unwrap_or_default())
    );

    if scale > 0 {
        let started = Instant::now();
        let creates = (0..scale).map(|i| {
            let backend = Arc::clone(backend);
            let spec = spec(image, format!("scale-{i}"));
            async move {
                let w = backend.create(spec).await?;
                invoke(&w.address).await?;
                Ok::<_, anyhow::Error>(started.elapsed())
            }
        });
        let results = futures_util::future::join_all(creates).await;
        let all = started.elapsed();
        let mut each = Vec::new();
        let mut failed = 0;
        for r in results {
            match r {
                Ok(d) => each.push(d),
                Err(e) => {
                    failed += 1;
                    eprintln!("scale-out worker failed: {e:#}");
                }
            }
        }
        println!(
            "{mode:<10} scale-out {scale} workers       all ready+invoked in {:>7.1} ms  (p50 {:.1} ms, {failed} failed)",
            ms(all),
            ms(median(&mut each))
        );
        for i in 0..scale {
            let _ = backend.destroy(&format!("scale-{i}")).await;
        }
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// One invocation of the worker's RIE endpoint.
async fn invoke(address: &str) -> anyhow::Result<()> {
    let addr: SocketAddr = address.parse()?;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let request = hyper::Request::post("/2015-03-31/functions/function/invocations")
        .header("host", address)
        .body(Full::new(Bytes::from_static(b"{}")))?;
    let response =
        tokio::time::timeout(Duration::from_secs(30), sender.send_request(request)).await??;
    let status = response.status();
    let _ = response.into_body().collect().await?;
    driver.abort();
    anyhow::ensure!(status.is_success(), "invoke answered {status}");
    Ok(())
}
