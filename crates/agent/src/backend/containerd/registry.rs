//! The registry side of a pull: the OCI distribution API's two reads
//! (`GET /v2/<name>/manifests/<reference>`, `GET /v2/<name>/blobs/<digest>`)
//! over HTTPS trusting only the configured CA, anonymously (the box
//! registry has no authentication).
//!
//! (The `oci-client` crate builds a default HTTP client with the system's
//! roots whatever it is configured with, and panics without any: the agent's
//! image has none.)

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};

/// Why the registry did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The image reference does not parse.
    #[error("{image:?} is not an image reference: {reason}")]
    Reference {
        /// The reference as given.
        image: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The request failed (connection, TLS, timeout).
    #[error("GET {url} failed")]
    Http {
        /// The URL.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an error status (404: no such image).
    #[error("GET {url} answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The content is not what its digest says.
    #[error("GET {url}: content does not match digest {digest}")]
    Digest {
        /// The URL.
        url: String,
        /// The expected digest.
        digest: String,
    },
    /// The client cannot be built (bad CA).
    #[error("cannot build the registry client")]
    Client {
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
}

/// A parsed image reference: `host[:port]/repository[:tag|@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ImageRef {
    pub registry: String,
    pub repository: String,
    /// A tag or a digest.
    pub reference: String,
}

impl ImageRef {
    /// Parses `image`. The registry is the first path component when it
    /// has a `.` or `:` or is `localhost` (Docker's rule); references
    /// without one name Docker Hub, which the agent cannot pull from
    /// anonymously, and are refused.
    pub fn parse(image: &str) -> Result<Self, RegistryError> {
        let bad = |reason| RegistryError::Reference {
            image: image.to_owned(),
            reason,
        };
        let (registry, rest) = image
            .split_once('/')
            .ok_or_else(|| bad("no registry host"))?;
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad("no registry host"));
        }
        let (repository, reference) = match rest.split_once('@') {
            Some((repo, digest)) => (repo, digest.to_owned()),
            None => match rest.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => (repo, tag.to_owned()),
                _ => (rest, "latest".to_owned()),
            },
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars().all(|c| {
                    c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || matches!(c, '.' | '_' | '-' | '/')
                })
        };
        if !valid(repository) {
            return Err(bad("invalid repository"));
        }
        if reference.is_empty() || reference.contains('/') {
            return Err(bad("invalid tag or digest"));
        }
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            reference,
        })
    }
}

/// An HTTP client for registries.
pub(super) struct Registry {
    client: reqwest::Client,
    insecure: Vec<String>,
}

impl Registry {
    /// A client trusting only `ca_pem` (without it, no HTTPS registry is
    /// trusted: the agent's image has no system roots), speaking plain HTTP
    /// to the `insecure` registries.
    pub fn new(ca_pem: Option<&[u8]>, insecure: Vec<String>) -> Result<Self, RegistryError> {
        // reqwest is built without a default crypto provider; tonic's is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let roots = match ca_pem {
            Some(pem) => reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|source| RegistryError::Client { source })?,
            None => Vec::new(),
        };
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .tls_certs_only(roots);
        let client = builder
            .build()
            .map_err(|source| RegistryError::Client { source })?;
        Ok(Self { client, insecure })
    }

    fn url(&self, image: &ImageRef, kind: &str, reference: &str) -> String {
        let scheme = if self.insecure.contains(&image.registry) {
            "http"
        } else {
            "https"
        };
        format!(
            "{scheme}://{}/v2/{}/{kind}/{reference}",
            image.registry, image.repository
        )
    }

    async fn get(&self, url: &str, accept: &str) -> Result<reqwest::Response, RegistryError> {
        let response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .map_err(|source| RegistryError::Http {
                url: url.to_owned(),
                source,
            })?;
        if !response.status().is_success() {
            return Err(RegistryError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        Ok(response)
    }

    /// A whole (small) response body.
    async fn get_bytes(&self, url: &str, accept: &str) -> Result<Bytes, RegistryError> {
        self.get(url, accept)
            .await?
            .bytes()
            .await
            .map_err(|source| RegistryError::Http {
                url: url.to_owned(),
                source,
            })
    }

    /// The manifest `reference` (a tag or digest) of `image`, accepting
    /// `media_types`: its bytes and digest.
    pub async fn manifest(
        &self,
        image: &ImageRef,
        reference: &str,
        media_types: &[&str],
    ) -> Result<(Bytes, String), RegistryError> {
        let url = self.url(image, "manifests", reference);
        let bytes = self.get_bytes(&url, &media_types.join(", ")).await?;
        let digest = sha256_digest(&bytes);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(RegistryError::Digest {
                url,
                digest: reference.to_owned(),
            });
        }
        Ok((bytes, digest))
    }

    /// A small blob (a config), checked against its digest.
    pub async fn blob(&self, image: &ImageRef, digest: &str) -> Result<Bytes, RegistryError> {
        let url = self.url(image, "blobs", digest);
        let bytes = self.get_bytes(&url, "*/*").await?;
        if sha256_digest(&bytes) != digest {
            return Err(RegistryError::Digest {
                url,
                digest: digest.to_owned(),
            });
        }
        Ok(bytes)
    }

    /// A blob as a stream of chunks (a layer; containerd checks its digest
    /// when it is committed).
    pub async fn blob_stream(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, String>> + Unpin + use<>, RegistryError> {
        let url = self.url(image, "blobs", digest);
        let response = self.get(&url, "*/*").await?;
        Ok(response
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|e| format!("GET {url}: {e}"))))
    }
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_registry_repository_and_tag_or_digest() {
        let r = ImageRef::parse("registry:5010/esb/hello:abc123").expect("ref");
        assert_eq!(r.registry, "registry:5010");
        assert_eq!(r.repository, "esb/hello");
        assert_eq!(r.reference, "abc123");
        let r = ImageRef::parse("127.0.0.1:5010/hello").expect("ref");
        assert_eq!(r.reference, "latest");
        let r = ImageRef::parse("localhost/hello@sha256:00ff").expect("ref");
        assert_eq!(r.reference, "sha256:00ff");
        assert!(ImageRef::parse("hello:latest").is_err());
        assert!(ImageRef::parse("library/hello").is_err());
        assert!(ImageRef::parse("registry:5010/Hello").is_err());
    }
}
