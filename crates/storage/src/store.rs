//! The S3 backend: `s3s-fs`'s filesystem store behind ESB's own [`S3`]
//! implementation, which fixes up the few places where `s3s-fs` departs from
//! S3's documented behaviour. Operations not listed here answer S3's
//! `NotImplemented` error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result, S3};
use s3s_fs::FileSystem;

use crate::lifecycle;

/// Buckets and objects stored as directories and files under one root.
#[derive(Clone)]
pub(crate) struct Store {
    fs: Arc<FileSystem>,
    root: Arc<PathBuf>,
}

impl Store {
    /// `root` is the directory `fs` was opened on.
    pub(crate) fn new(fs: FileSystem, root: PathBuf) -> Self {
        Self {
            fs: Arc::new(fs),
            root: Arc::new(root),
        }
    }

    pub(crate) fn fs(&self) -> &FileSystem {
        &self.fs
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The object's bytes (its requested range) read in large chunks, or
    /// `None` to keep s3s-fs's own body (keys with `.`/`..` segments, whose
    /// path s3s-fs normalises itself, or a file that cannot be reopened).
    async fn fast_body(
        &self,
        bucket: &str,
        key: &str,
        range: Option<Range>,
        output: &GetObjectOutput,
    ) -> Option<StreamingBlob> {
        use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
        const CHUNK: usize = 256 * 1024;
        let plain = !key.starts_with('/')
            && key
                .split('/')
                .all(|segment| segment != "." && segment != "..");
        if !plain {
            return None;
        }
        let length = u64::try_from(output.content_length?).ok()?;
        let mut file = tokio::fs::File::open(self.root.join(bucket).join(key))
            .await
            .ok()?;
        let file_len = file.metadata().await.ok()?.len();
        let start = match range {
            None => 0,
            Some(Range::Int { first, .. }) => first,
            Some(Range::Suffix { length }) => file_len.saturating_sub(length),
        };
        file.seek(std::io::SeekFrom::Start(start)).await.ok()?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file.take(length), CHUNK);
        Some(StreamingBlob::wrap(stream))
    }

    fn bucket_dir(&self, bucket: &str) -> S3Result<PathBuf> {
        let dir = self.root.join(bucket);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(s3_error!(NoSuchBucket))
        }
    }

    /// The bucket's stored lifecycle configuration, if any.
    pub(crate) async fn lifecycle(
        &self,
        bucket: &str,
    ) -> Result<Option<BucketLifecycleConfiguration>, S3Error> {
        let path = lifecycle::config_path(&self.root, bucket);
        match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(S3Error::internal_error),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(S3Error::internal_error(e)),
        }
    }
}

#[async_trait::async_trait]
impl S3 for Store {
    // Delegated to the filesystem backend unchanged.
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.fs.create_bucket(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.fs.copy_object(req).await
    }

    /// S3 refuses to delete a bucket that still holds objects; `s3s-fs`
    /// would remove them all. The lifecycle configuration goes with it.
    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let dir = self.bucket_dir(&req.input.bucket)?;
        // Deleting objects leaves their (empty) parent directories behind.
        let not_empty = tokio::task::spawn_blocking(move || holds_files(&dir))
            .await
            .map_err(S3Error::internal_error)?
            .map_err(S3Error::internal_error)?;
        if not_empty {
            return Err(s3_error!(BucketNotEmpty));
        }
        let path = lifecycle::config_path(&self.root, &req.input.bucket);
        let resp = self.fs.delete_bucket(req).await?;
        remove_if_exists(&path).await?;
        Ok(resp)
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.fs.delete_object(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.fs.delete_objects(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.fs.get_bucket_location(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let (bucket, key, range) = (
            req.input.bucket.clone(),
            req.input.key.clone(),
            req.input.range,
        );
        let mut response = self.fs.get_object(req).await?;
        // s3s-fs streams the body in 4 KB reads, each a trip to the blocking
        // pool; large reads make GETs of big objects several times faster.
        if let Some(body) = self.fast_body(&bucket, &key, range, &response.output).await {
            response.output.body = Some(body);
        }
        Ok(response)
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.fs.head_object(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.fs.list_buckets(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.fs.list_objects(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.fs.list_objects_v2(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.fs.put_object(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.fs.create_multipart_upload(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.fs.upload_part(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.fs.upload_part_copy(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.fs.complete_multipart_upload(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.fs.abort_multipart_upload(req).await
    }

    /// S3 lists parts in ascending part-number order; `s3s-fs` returns them
    /// in directory order.
    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let mut resp = self.fs.list_parts(req).await?;
        if let Some(parts) = resp.output.parts.as_mut() {
            parts.sort_by_key(|p| p.part_number);
        }
        Ok(resp)
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let input = req.input;
        self.bucket_dir(&input.bucket)?;
        let Some(config) = input.lifecycle_configuration else {
            return Err(s3_error!(MalformedXML, "missing LifecycleConfiguration"));
        };
        lifecycle::validate(&config)?;
        let json = serde_json::to_vec(&config).map_err(S3Error::internal_error)?;
        let path = lifecycle::config_path(&self.root, &input.bucket);
        let tmp = path.with_extension("json.tmp");
        tokio::fs::write(&tmp, &json)
            .await
            .map_err(S3Error::internal_error)?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(S3Error::internal_error)?;
        Ok(S3Response::new(
            PutBucketLifecycleConfigurationOutput::default(),
        ))
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        self.bucket_dir(&req.input.bucket)?;
        match self.lifecycle(&req.input.bucket).await? {
            Some(config) => Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
                rules: Some(config.rules),
                ..Default::default()
            })),
            None => Err(s3_error!(NoSuchLifecycleConfiguration)),
        }
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.bucket_dir(&req.input.bucket)?;
        remove_if_exists(&lifecycle::config_path(&self.root, &req.input.bucket)).await?;
        Ok(S3Response::new(DeleteBucketLifecycleOutput::default()))
    }
}

async fn remove_if_exists(path: &Path) -> S3Result<()> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(S3Error::internal_error(e)),
    }
}

/// Whether `dir` or any directory below it contains a non-directory entry.
fn holds_files(dir: &Path) -> std::io::Result<bool> {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            } else {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
