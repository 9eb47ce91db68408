//! The gRPC connection to the gateway: endpoint (plain or mTLS) and the
//! reconnect backoff.

use std::fmt;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::settings::{GatewaySettings, ReconnectSettings};
use crate::AgentError;

/// Builds the endpoint once, so that bad URLs and unusable TLS material are
/// reported before the first connection attempt.
pub(crate) fn endpoint(gateway: &GatewaySettings) -> Result<Endpoint, AgentError> {
    let url = gateway.url.clone();
    let https = if url.starts_with("https://") {
        true
    } else if url.starts_with("http://") {
        false
    } else {
        return Err(AgentError::UnsupportedScheme { url });
    };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|source| AgentError::InvalidGatewayUrl {
            url: url.clone(),
            source,
        })?
        .connect_timeout(gateway.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(gateway.keepalive_interval)
        .keep_alive_timeout(gateway.keepalive_timeout)
        .keep_alive_while_idle(true);
    match (&gateway.tls, https) {
        (Some(tls), true) => {
            let mut config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&tls.ca_pem))
                .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
            if let Some(name) = &tls.server_name {
                config = config.domain_name(name.clone());
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|source| AgentError::Tls { url, source })?;
        }
        (None, true) => return Err(AgentError::MissingTls { url }),
        (Some(_), false) => return Err(AgentError::TlsWithoutHttps { url }),
        (None, false) => {}
    }
    Ok(endpoint)
}

/// Opens a connection (TCP, TLS handshake, HTTP/2), bounded by the connect
/// timeout.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<Channel, ConnectError> {
    match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(source)) => Err(ConnectError::Failed { source }),
        Err(_) => Err(ConnectError::TimedOut { timeout }),
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("cannot connect to the gateway")]
    Failed {
        #[source]
        source: tonic::transport::Error,
    },
    #[error("no connection to the gateway within {timeout:?}")]
    TimedOut { timeout: Duration },
}

/// Capped exponential backoff with jitter.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(settings: &ReconnectSettings) -> Self {
        let initial = settings.initial.max(Duration::from_millis(1));
        let max = settings.max.max(initial);
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay before the next attempt: the current step jittered to
    /// 50-100 % of its value; the step then doubles up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(self.max);
        let half = step / 2;
        let jitter_nanos = fastrand::u64(0..=u64::try_from(half.as_nanos()).unwrap_or(u64::MAX));
        half + Duration::from_nanos(jitter_nanos)
    }

    /// Back to the initial delay (after a session that registered).
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Displays an error with its chain of sources: `a: b: c`.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{AgentSettings, TlsSettings};

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(&ReconnectSettings {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        });
        let steps = [100u64, 200, 400, 800, 1000, 1000];
        for step in steps {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(step / 2) && d <= Duration::from_millis(step),
                "delay {d:?} outside [{}ms, {step}ms]",
                step / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn endpoint_checks_scheme_and_tls_pairing() {
        let mut g = AgentSettings::new("ftp://gateway:1", "n").gateway;
        assert!(matches!(
            endpoint(&g),
            Err(AgentError::UnsupportedScheme { .. })
        ));
        g.url = "https://gateway:50051".into();
        assert!(matches!(endpoint(&g), Err(AgentError::MissingTls { .. })));
        g.url = "http://gateway:50051".into();
        assert!(endpoint(&g).is_ok());
        g.tls = Some(TlsSettings {
            ca_pem: Vec::new(),
            cert_pem: Vec::new(),
            key_pem: Vec::new(),
            server_name: None,
        });
        assert!(matches!(
            endpoint(&g),
            Err(AgentError::TlsWithoutHttps { .. })
        ));
        g.url = "https://gateway:50051".into();
        assert!(matches!(endpoint(&g), Err(AgentError::Tls { .. })));
    }

    #[test]
    fn tls_settings_debug_never_shows_the_key() {
        let tls = TlsSettings {
            ca_pem: b"ca".to_vec(),
            cert_pem: b"cert".to_vec(),
            key_pem: b"-----BEGIN PRIVATE KEY----- secret".to_vec(),
            server_name: None,
        };
        let shown = format!("{tls:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
