//! SigV4 credentials: the box's single key pair.

use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};

use crate::Credentials;

/// Resolves the secret of the box's access key. `s3s` verifies header
/// signatures, presigned URLs and POST policies against it and answers
/// `SignatureDoesNotMatch` on a mismatch and `AccessDenied` for anonymous
/// requests.
pub(crate) struct BoxAuth {
    access_key_id: String,
    secret: SecretKey,
}

impl BoxAuth {
    pub(crate) fn new(credentials: &Credentials) -> Self {
        Self {
            access_key_id: credentials.access_key_id().to_owned(),
            secret: SecretKey::from(credentials.secret_access_key()),
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for BoxAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.access_key_id {
            Ok(self.secret.clone())
        } else {
            // S3's answer for a key id it does not know.
            Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            ))
        }
    }
}
