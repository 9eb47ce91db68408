//! TLS material: the HTTPS server configuration for clients, and the gRPC
//! server configuration that requires agents' client certificates (mTLS).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("the certificate and key are not usable: {0}")]
    Config(#[source] tokio_rustls::rustls::Error),
}

/// PEM files of the gateway's identity and of the CA that signs agents.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// The CA agents' client certificates must chain to.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl TlsFiles {
    pub fn read(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<TlsFiles, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let files = TlsFiles {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            client_ca_pem: client_ca.map(read).transpose()?,
        };
        // Parse now so bad material fails at startup, naming the file.
        let certs = CertificateDer::pem_slice_iter(&files.cert_pem)
            .filter_map(Result::ok)
            .count();
        if certs == 0 {
            return Err(TlsError::NoCertificate {
                path: cert.to_owned(),
            });
        }
        if PrivateKeyDer::from_pem_slice(&files.key_pem).is_err() {
            return Err(TlsError::NoKey {
                path: key.to_owned(),
            });
        }
        if let (Some(pem), Some(path)) = (&files.client_ca_pem, client_ca) {
            if CertificateDer::pem_slice_iter(pem)
                .filter_map(Result::ok)
                .count()
                == 0
            {
                return Err(TlsError::NoCertificate {
                    path: path.to_owned(),
                });
            }
        }
        Ok(files)
    }

    /// The rustls configuration of the client-facing HTTPS port.
    pub fn https_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert_pem)
            .filter_map(Result::ok)
            .collect();
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|_| TlsError::Config(tokio_rustls::rustls::Error::NoCertificatesPresented))?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Config)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The tonic configuration of the agents' gRPC port: the gateway's
    /// identity, and client certificates required when a CA is given.
    pub fn grpc_config(&self) -> tonic::transport::ServerTlsConfig {
        let identity = tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem);
        let config = tonic::transport::ServerTlsConfig::new().identity(identity);
        match &self.client_ca_pem {
            Some(ca) => config.client_ca_root(tonic::transport::Certificate::from_pem(ca)),
            None => config,
        }
    }
}
