//! Function images in containerd: resolved from containerd's Images and
//! Content services when present, else pulled from the registry.
//!
//! containerd 1.6 has no transfer service, so the agent pulls: the manifest,
//! config and layers come from the registry over HTTPS (`oci-client`,
//! trusting only the configured CA) and are written into containerd's
//! Content service with the labels that keep them from garbage collection;
//! each layer is unpacked (Snapshots.Prepare on its parent's chain id, Diff.
//! Apply, Snapshots.Commit as its own chain id, skipped when the chain is
//! already there); the image record comes last. Everything runs under a
//! lease, so a collection in the middle of a pull removes nothing.
//!
//! Each image reference is resolved once per agent; concurrent creates of
//! the same image wait for one resolution, and pulls run one at a time
//! (images sharing layers would otherwise write the same blob twice).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::api::content::{
    AbortRequest, InfoRequest, ReadContentRequest, WriteAction, WriteContentRequest,
};
use super::api::diff::ApplyRequest;
use super::api::images::{CreateImageRequest, GetImageRequest, Image, UpdateImageRequest};
use super::api::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use super::api::types::Descriptor;
use super::registry::{ImageRef, RegistryError};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use super::Containerd;

const MANIFEST_DOCKER: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MANIFEST_OCI: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_DOCKER: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const INDEX_OCI: &str = "application/vnd.oci.image.index.v1+json";
const LABEL_UNCOMPRESSED: &str = "containerd.io/uncompressed";
const LABEL_GC_CONFIG: &str = "containerd.io/gc.ref.content.config";
const LABEL_GC_LAYER: &str = "containerd.io/gc.ref.content.l";
const LABEL_GC_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot";
const LABEL_SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";

/// What a worker's spec needs from its image's config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, as `KEY=value`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: String,
}

/// An image ready to run: its config and the chain id of its top layer
/// (the parent of every worker's snapshot).
#[derive(Debug, Clone)]
pub(super) struct ResolvedImage {
    pub config: ImageConfig,
    pub chain_id: String,
}

/// Why an image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The registry refused or failed (including: no such image), or the
    /// reference does not parse.
    #[error("pulling {image} from the registry failed")]
    Registry {
        image: String,
        #[source]
        source: RegistryError,
    },
    /// The image is not on the node and pulling is off.
    #[error("{image} is not in containerd and pulling is disabled")]
    Missing { image: String },
    /// The manifest or config is not what a runnable image has.
    #[error("image {image}: {reason}")]
    Invalid { image: String, reason: String },
    /// A containerd call failed.
    #[error("containerd {operation} failed for image {image}")]
    Containerd {
        operation: &'static str,
        image: String,
        #[source]
        source: tonic::Status,
    },
    /// The pull took longer than allowed.
    #[error("pulling {image} took longer than {timeout:?}")]
    Timeout { image: String, timeout: Duration },
}

/// The node's image cache: one async slot per reference.
#[derive(Default)]
pub(super) struct ImageCache {
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<ResolvedImage>>>>>,
    pulls: tokio::sync::Mutex<()>,
}

/// The registry's view of an image manifest (Docker v2 or OCI).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    media_type: String,
    config: Option<Blob>,
    #[serde(default)]
    layers: Vec<Blob>,
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Blob {
    media_type: String,
    digest: String,
    size: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    digest: String,
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Debug, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RunConfig>,
    rootfs: RootFs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

impl ConfigFile {
    fn image_config(&self) -> ImageConfig {
        let c = self.config.as_ref();
        ImageConfig {
            entrypoint: c.and_then(|c| c.entrypoint.clone()).unwrap_or_default(),
            cmd: c.and_then(|c| c.cmd.clone()).unwrap_or_default(),
            env: c.and_then(|c| c.env.clone()).unwrap_or_default(),
            working_dir: c.and_then(|c| c.working_dir.clone()).unwrap_or_default(),
        }
    }
}

/// The chain ids of a layer stack (OCI image spec): the first is the first
/// diff id, each next one `sha256(parent + " " + diff id)`.
pub(super) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let id = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => format!(
                "sha256:{:x}",
                Sha256::digest(format!("{parent} {diff_id}").as_bytes())
            ),
        };
        chain.push(id);
    }
    chain
}

impl Containerd {
    /// The image `image`, from containerd or else pulled (when allowed),
    /// once per reference.
    pub(super) async fn resolve_image(&self, image: &str) -> Result<ResolvedImage, ImageError> {
        let slot = {
            let mut slots = self
                .images
                .slots
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(slots.entry(image.to_owned()).or_default())
        };
        let mut slot = slot.lock().await;
        if let Some(resolved) = slot.as_ref() {
            return Ok(resolved.clone());
        }
        let resolved = match self.local_image(image).await? {
            Some(resolved) => resolved,
            None => {
                let Some(timeout) = self.config.pull_timeout else {
                    return Err(ImageError::Missing {
                        image: image.to_owned(),
                    });
                };
                let _one_pull = self.images.pulls.lock().await;
                tracing::info!(%image, "pulling an image into containerd");
                let started = tokio::time::Instant::now();
                let resolved = tokio::time::timeout(timeout, self.pull(image))
                    .await
                    .map_err(|_| ImageError::Timeout {
                        image: image.to_owned(),
                        timeout,
                    })??;
                tracing::info!(%image, elapsed_ms = started.elapsed().as_millis() as u64, "image pulled and unpacked");
                resolved
            }
        };
        *slot = Some(resolved.clone());
        Ok(resolved)
    }

    /// The image as containerd has it, if its record, manifest, config and
    /// unpacked layers are all there.
    async fn local_image(&self, image: &str) -> Result<Option<ResolvedImage>, ImageError> {
        let err = |operation| {
            move |source| ImageError::Containerd {
                operation,
                image: image.to_owned(),
                source,
            }
        };
        let record = match self
            .images_client()
            .get(self.request(GetImageRequest {
                name: image.to_owned(),
            }))
            .await
        {
            Ok(r) => r.into_inner().image,
            Err(s) if s.code() == Code::NotFound => return Ok(None),
            Err(s) => return Err(err("get image")(s)),
        };
        let Some(target) = record.and_then(|r| r.target) else {
            return Ok(None);
        };
        let Some(manifest) = self
            .read_content(&target.digest)
            .await
            .map_err(err("read manifest"))?
        else {
            return Ok(None);
        };
        let manifest: Manifest = parse(image, "manifest", &manifest)?;
        let Some(config) = manifest.config else {
            return Ok(None);
        };
        let Some(config) = self
            .read_content(&config.digest)
            .await
            .map_err(err("read config"))?
        else {
            return Ok(None);
        };
        let config: ConfigFile = parse(image, "config", &config)?;
        let Some(chain_id) = chain_ids(&config.rootfs.diff_ids).pop() else {
            return Err(invalid(image, "the image has no layers"));
        };
        if !self
            .snapshot_exists(&chain_id)
            .await
            .map_err(err("stat snapshot"))?
        {
            return Ok(None);
        }
        Ok(Some(ResolvedImage {
            config: config.image_config(),
            chain_id,
        }))
    }

    /// Pulls and unpacks `image` under a lease.
    async fn pull(&self, image: &str) -> Result<ResolvedImage, ImageError> {
        let reference = ImageRef::parse(image).map_err(|source| ImageError::Registry {
            image: image.to_owned(),
            source,
        })?;
        let lease = self
            .create_lease()
            .await
            .map_err(|source| ImageError::Containerd {
                operation: "create lease",
                image: image.to_owned(),
                source,
            })?;
        let result = self.pull_leased(image, &reference, &lease).await;
        if let Err(e) = self.delete_lease(&lease).await {
            tracing::warn!(%image, lease = %lease, error = %e, "cannot delete a pull lease (it expires by itself)");
        }
        result
    }

    async fn pull_leased(
        &self,
        image: &str,
        reference: &ImageRef,
        lease: &str,
    ) -> Result<ResolvedImage, ImageError> {
        let registry_err = |source| ImageError::Registry {
            image: image.to_owned(),
            source,
        };
        let ctd_err = |operation| {
            move |source| ImageError::Containerd {
                operation,
                image: image.to_owned(),
                source,
            }
        };
        let accept = [MANIFEST_DOCKER, MANIFEST_OCI, INDEX_DOCKER, INDEX_OCI];
        let (mut raw, mut digest) = self
            .registry
            .manifest(reference, &reference.reference, &accept)
            .await
            .map_err(registry_err)?;
        let mut manifest: Manifest = parse(image, "manifest", &raw)?;
        if matches!(manifest.media_type.as_str(), INDEX_DOCKER | INDEX_OCI)
            || !manifest.manifests.is_empty()
        {
            let entry = manifest
                .manifests
                .iter()
                .find(|m| {
                    m.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                })
                .ok_or_else(|| invalid(image, "the index has no linux/amd64 image"))?;
            (raw, digest) = self
                .registry
                .manifest(reference, &entry.digest, &accept[..2])
                .await
                .map_err(registry_err)?;
            manifest = parse(image, "manifest", &raw)?;
        }
        let media_type = if manifest.media_type.is_empty() {
            MANIFEST_OCI.to_owned()
        } else {
            manifest.media_type.clone()
        };
        let config_blob = manifest
            .config
            .clone()
            .ok_or_else(|| invalid(image, "the manifest has no config"))?;
        let config_raw = self
            .registry
            .blob(reference, &config_blob.digest)
            .await
            .map_err(registry_err)?;
        let config: ConfigFile = parse(image, "config", &config_raw)?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() || diff_ids.is_empty() {
            return Err(invalid(
                image,
                &format!(
                    "{} layers but {} diff ids in the config",
                    manifest.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let chain = chain_ids(diff_ids);

        for (layer, diff_id) in manifest.layers.iter().zip(diff_ids) {
            if self
                .content_exists(&layer.digest)
                .await
                .map_err(ctd_err("content info"))?
            {
                continue;
            }
            let chunks = self
                .registry
                .blob_stream(reference, &layer.digest)
                .await
                .map_err(registry_err)?;
            let labels = HashMap::from([(LABEL_UNCOMPRESSED.to_owned(), diff_id.clone())]);
            self.write_content(layer, labels, chunks, lease)
                .await
                .map_err(|reason| invalid(image, &format!("layer {}: {reason}", layer.digest)))?;
        }
        let top = chain.last().cloned().unwrap_or_default();
        let config_labels = HashMap::from([(
            format!("{LABEL_GC_SNAPSHOT}.{}", self.config.snapshotter),
            top.clone(),
        )]);
        self.write_bytes(&config_blob, config_labels, config_raw, lease)
            .await
            .map_err(|reason| invalid(image, &format!("config: {reason}")))?;
        let mut manifest_labels =
            HashMap::from([(LABEL_GC_CONFIG.to_owned(), config_blob.digest.clone())]);
        for (i, layer) in manifest.layers.iter().enumerate() {
            manifest_labels.insert(format!("{LABEL_GC_LAYER}.{i}"), layer.digest.clone());
        }
        let manifest_blob = Blob {
            media_type: media_type.clone(),
            digest: digest.clone(),
            size: raw.len() as i64,
        };
        self.write_bytes(&manifest_blob, manifest_labels, raw, lease)
            .await
            .map_err(|reason| invalid(image, &format!("manifest: {reason}")))?;

        for (i, layer) in manifest.layers.iter().enumerate() {
            let parent = if i == 0 { "" } else { chain[i - 1].as_str() };
            self.unpack_layer(image, layer, &diff_ids[i], parent, &chain[i], lease)
                .await?;
        }

        let record = Image {
            name: image.to_owned(),
            labels: HashMap::new(),
            target: Some(Descriptor {
                media_type,
                digest,
                size: manifest_blob.size,
                annotations: HashMap::new(),
            }),
            created_at: None,
            updated_at: None,
        };
        let created = self
            .images_client()
            .create(self.leased(
                CreateImageRequest {
                    image: Some(record.clone()),
                    source_date_epoch: None,
                },
                lease,
            ))
            .await;
        match created {
            Ok(_) => {}
            Err(s) if s.code() == Code::AlreadyExists => {
                self.images_client()
                    .update(self.leased(
                        UpdateImageRequest {
                            image: Some(record),
                            update_mask: None,
                            source_date_epoch: None,
                        },
                        lease,
                    ))
                    .await
                    .map_err(ctd_err("update image"))?;
            }
            Err(s) => return Err(ctd_err("create image")(s)),
        }
        Ok(ResolvedImage {
            config: config.image_config(),
            chain_id: top,
        })
    }

    /// Prepare on the parent chain, apply the layer, commit as `chain_id`;
    /// nothing when the chain is already there.
    async fn unpack_layer(
        &self,
        image: &str,
        layer: &Blob,
        diff_id: &str,
        parent: &str,
        chain_id: &str,
        lease: &str,
    ) -> Result<(), ImageError> {
        let err = |operation| {
            move |source| ImageError::Containerd {
                operation,
                image: image.to_owned(),
                source,
            }
        };
        if self
            .snapshot_exists(chain_id)
            .await
            .map_err(err("stat snapshot"))?
        {
            return Ok(());
        }
        let key = format!("esb-extract-{}-{chain_id}", fastrand::u64(..));
        let snapshotter = self.config.snapshotter.clone();
        let prepared = self
            .snapshots_client()
            .prepare(self.leased(
                PrepareSnapshotRequest {
                    snapshotter: snapshotter.clone(),
                    key: key.clone(),
                    parent: parent.to_owned(),
                    labels: HashMap::from([(LABEL_SNAPSHOT_REF.to_owned(), chain_id.to_owned())]),
                },
                lease,
            ))
            .await;
        let prepared = match prepared {
            Ok(p) => p.into_inner(),
            // The chain was committed meanwhile (another agent's pull).
            Err(s) if s.code() == Code::AlreadyExists => return Ok(()),
            Err(s) => return Err(err("prepare snapshot")(s)),
        };
        let applied = self
            .diff_client()
            .apply(self.leased(
                ApplyRequest {
                    diff: Some(Descriptor {
                        media_type: layer.media_type.clone(),
                        digest: layer.digest.clone(),
                        size: layer.size,
                        annotations: HashMap::new(),
                    }),
                    mounts: prepared.mounts,
                    payloads: HashMap::new(),
                    sync_fs: false,
                },
                lease,
            ))
            .await;
        let outcome = match applied {
            Ok(r) => {
                let got = r.into_inner().applied.map(|d| d.digest).unwrap_or_default();
                if got == diff_id {
                    let committed = self
                        .snapshots_client()
                        .commit(self.leased(
                            CommitSnapshotRequest {
                                snapshotter: snapshotter.clone(),
                                name: chain_id.to_owned(),
                                key: key.clone(),
                                labels: HashMap::new(),
                            },
                            lease,
                        ))
                        .await;
                    match committed {
                        Ok(_) => return Ok(()),
                        // Unpacked meanwhile by someone else.
                        Err(s) if s.code() == Code::AlreadyExists => Ok(()),
                        Err(s) => Err(err("commit snapshot")(s)),
                    }
                } else {
                    Err(invalid(
                        image,
                        &format!(
                            "layer {} unpacked to {got}, expected {diff_id}",
                            layer.digest
                        ),
                    ))
                }
            }
            Err(s) => Err(err("apply layer")(s)),
        };
        let removed = self
            .snapshots_client()
            .remove(self.leased(RemoveSnapshotRequest { snapshotter, key }, lease))
            .await;
        if let Err(e) = removed {
            tracing::warn!(%image, error = %e, "cannot remove an unpack snapshot");
        }
        outcome
    }

    pub(super) async fn snapshot_exists(&self, key: &str) -> Result<bool, tonic::Status> {
        match self
            .snapshots_client()
            .stat(self.request(StatSnapshotRequest {
                snapshotter: self.config.snapshotter.clone(),
                key: key.to_owned(),
            }))
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(s) => Err(s),
        }
    }

    async fn content_exists(&self, digest: &str) -> Result<bool, tonic::Status> {
        match self
            .content_client()
            .info(self.request(InfoRequest {
                digest: digest.to_owned(),
            }))
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(s) => Err(s),
        }
    }

    /// A blob of the content store, `None` when it is not there.
    async fn read_content(&self, digest: &str) -> Result<Option<Vec<u8>>, tonic::Status> {
        let stream = self
            .content_client()
            .read(self.request(ReadContentRequest {
                digest: digest.to_owned(),
                offset: 0,
                size: 0,
            }))
            .await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(s) if s.code() == Code::NotFound => return Ok(None),
            Err(s) => return Err(s),
        };
        let mut data = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(chunk)) => data.extend_from_slice(&chunk.data),
                Ok(None) => return Ok(Some(data)),
                Err(s) if s.code() == Code::NotFound => return Ok(None),
                Err(s) => return Err(s),
            }
        }
    }

    async fn write_bytes(
        &self,
        blob: &Blob,
        labels: HashMap<String, String>,
        data: Bytes,
        lease: &str,
    ) -> Result<(), String> {
        if self
            .content_exists(&blob.digest)
            .await
            .map_err(|s| s.to_string())?
        {
            return Ok(());
        }
        let chunks = futures_util::stream::iter([Ok::<_, String>(data)]);
        self.write_content(blob, labels, chunks, lease).await
    }

    /// Streams a blob into the content store and commits it with `labels`
    /// (containerd checks size and digest). A blob that is already there
    /// counts as written.
    async fn write_content<S>(
        &self,
        blob: &Blob,
        labels: HashMap<String, String>,
        mut chunks: S,
        lease: &str,
    ) -> Result<(), String>
    where
        S: futures_util::Stream<Item = Result<Bytes, String>> + Unpin,
    {
        let (tx, rx) = tokio::sync::mpsc::channel::<WriteContentRequest>(8);
        let mut client = self.content_client();
        let request = self.leased(ReceiverStream::new(rx), lease);
        // The responses are read while the chunks are sent: containerd
        // answers every message and stops reading when nobody listens.
        let call = tokio::spawn(async move {
            let mut responses = client.write(request).await?.into_inner();
            while responses.message().await?.is_some() {}
            Ok::<(), tonic::Status>(())
        });
        // A ref of its own: agents of other stacks on this node may write
        // the same blob at the same time (the second commit finds it there).
        let reference = format!("esb-pull-{}-{:016x}", blob.digest, fastrand::u64(..));
        let mut offset: i64 = 0;
        let mut sent = Ok(());
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    sent = Err(e);
                    break;
                }
            };
            let len = chunk.len() as i64;
            let message = WriteContentRequest {
                action: WriteAction::Write as i32,
                r#ref: reference.clone(),
                total: blob.size,
                expected: blob.digest.clone(),
                offset,
                data: chunk.to_vec(),
                labels: HashMap::new(),
            };
            offset += len;
            if tx.send(message).await.is_err() {
                break;
            }
        }
        if sent.is_ok() {
            let commit = WriteContentRequest {
                action: WriteAction::Commit as i32,
                r#ref: reference.clone(),
                total: blob.size,
                expected: blob.digest.clone(),
                offset,
                data: Vec::new(),
                labels,
            };
            let _ = tx.send(commit).await;
        }
        drop(tx);
        let outcome = match call.await {
            Ok(Ok(())) => sent,
            Ok(Err(s)) if s.code() == Code::AlreadyExists => Ok(()),
            Ok(Err(s)) => Err(format!("content write: {s}")),
            Err(e) => Err(e.to_string()),
        };
        if outcome.is_err() {
            // Nothing half-written stays in containerd's ingest directory.
            let _ = self
                .content_client()
                .abort(self.request(AbortRequest { r#ref: reference }))
                .await;
        }
        outcome
    }
}

fn parse<'a, T: Deserialize<'a>>(image: &str, what: &str, raw: &'a [u8]) -> Result<T, ImageError> {
    serde_json::from_slice(raw).map_err(|e| invalid(image, &format!("bad {what}: {e}")))
}

fn invalid(image: &str, reason: &str) -> ImageError {
    ImageError::Invalid {
        image: image.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let diff = vec![
            "sha256:a".to_owned(),
            "sha256:b".to_owned(),
            "sha256:c".to_owned(),
        ];
        let chain = chain_ids(&diff);
        assert_eq!(chain[0], "sha256:a");
        let second = format!("sha256:{:x}", Sha256::digest(b"sha256:a sha256:b"));
        assert_eq!(chain[1], second);
        let third = format!(
            "sha256:{:x}",
            Sha256::digest(format!("{second} sha256:c").as_bytes())
        );
        assert_eq!(chain[2], third);
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn docker_configs_give_entrypoint_cmd_env_and_workdir() {
        let raw = br#"{"architecture":"amd64","config":{"Env":["PATH=/usr/bin"],
            "Entrypoint":["/usr/local/bin/esb-runtime"],"Cmd":["app.handler"],
            "WorkingDir":"/var/task"},"rootfs":{"type":"layers","diff_ids":["sha256:a"]}}"#;
        let config: ConfigFile = parse("x", "config", raw).expect("config");
        assert_eq!(
            config.image_config(),
            ImageConfig {
                entrypoint: vec!["/usr/local/bin/esb-runtime".into()],
                cmd: vec!["app.handler".into()],
                env: vec!["PATH=/usr/bin".into()],
                working_dir: "/var/task".into(),
            }
        );
        let bare: ConfigFile =
            parse("x", "config", br#"{"rootfs":{"diff_ids":[]}}"#).expect("bare config");
        assert_eq!(bare.image_config(), ImageConfig::default());
    }
}
