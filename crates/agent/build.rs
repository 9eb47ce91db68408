//! Compiles the containerd API protos (proto/containerd) with the pure-Rust
//! `protox`: no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../proto/containerd")
        .canonicalize()?;
    let api = "github.com/containerd/containerd/api";
    let files: Vec<String> = [
        "services/containers/v1/containers.proto",
        "services/content/v1/content.proto",
        "services/diff/v1/diff.proto",
        "services/events/v1/events.proto",
        "services/images/v1/images.proto",
        "services/leases/v1/leases.proto",
        "services/snapshots/v1/snapshots.proto",
        "services/tasks/v1/tasks.proto",
        "services/version/v1/version.proto",
        "events/task.proto",
    ]
    .iter()
    .map(|f| root.join(format!("{api}/{f}")).display().to_string())
    .collect();
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(&files, [&root])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
