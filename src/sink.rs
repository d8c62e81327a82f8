//! Where the site is written by `publish` and read back by `site_check`: any object_store
//! location (`file:///dir`, `s3://bucket/prefix`).
//! Local writes go to a temporary file renamed into place and S3 puts are atomic, so a reader
//! never sees a half-written page.

use object_store::path::Path as ObjectPath;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};
use std::sync::Arc;

/// Why the publish location cannot be opened, written or read; the location or the object is
/// named once, the object store's error is the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The location is neither `file://` nor `s3://`.
    #[error("cannot open the publish location {url}: use file:///DIR or s3://BUCKET/PREFIX")]
    Unsupported { url: String },
    /// The location cannot be opened (its folder created, its URL parsed, its client built).
    #[error("cannot open the publish location {url}")]
    Open {
        url: String,
        #[source]
        cause: OpenCause,
    },
    /// An object of the location cannot be written, read or removed.
    #[error("writing {path} failed")]
    Io {
        path: String,
        source: object_store::Error,
    },
}

/// What stopped a publish location from opening.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenCause {
    /// The local folder cannot be created.
    #[error(transparent)]
    Folder(#[from] std::io::Error),
    /// The object store rejected the location or its settings.
    #[error(transparent)]
    Store(#[from] object_store::Error),
    /// The `s3://` URL does not parse.
    #[error(transparent)]
    Url(#[from] url::ParseError),
    /// The URL's path is not a valid object prefix.
    #[error(transparent)]
    Prefix(#[from] object_store::path::Error),
}

#[derive(Clone)]
pub struct Sink {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    url: String,
    /// Object stores that keep metadata (S3) get a Content-Type per object.
    typed: bool,
    /// The folder of a local sink (its temporary files can be found and removed).
    local: Option<std::path::PathBuf>,
}

impl Sink {
    pub fn open(url: &str) -> Result<Sink, SinkError> {
        let open_err = |cause: OpenCause| SinkError::Open {
            url: url.to_string(),
            cause,
        };
        if let Some(dir) = url.strip_prefix("file://") {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.into()))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| open_err(e.into()))?;
            Ok(Sink {
                store: Arc::new(fs),
                prefix: ObjectPath::default(),
                url: url.to_string(),
                typed: false,
                local: Some(std::path::PathBuf::from(dir)),
            })
        } else if url.starts_with("s3://") {
            let parsed = url::Url::parse(url).map_err(|e| open_err(e.into()))?;
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .build()
                .map_err(|e| open_err(e.into()))?;
            // Percent-encoded in the URL, plain in object paths.
            let prefix = ObjectPath::from_url_path(parsed.path().trim_matches('/'))
                .map_err(|e| open_err(e.into()))?;
            Ok(Sink {
                store: Arc::new(s3),
                prefix,
                url: url.to_string(),
                typed: true,
                local: None,
            })
        } else {
            Err(SinkError::Unsupported {
                url: url.to_string(),
            })
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Removes the temporary files a killed process left in the folder `rel_dir` of a local
    /// sink: a local put writes `NAME#N` and renames it into place, so a kill between the two
    /// leaves `NAME#N` behind (S3 puts are atomic and leave nothing). No page, index or manifest
    /// name holds a `#`. Returns how many were removed.
    pub fn remove_temporaries(&self, rel_dir: &str) -> usize {
        let Some(root) = &self.local else {
            return 0;
        };
        let Ok(entries) = std::fs::read_dir(root.join(rel_dir)) else {
            return 0;
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name();
            let is_temporary =
                name.to_str()
                    .and_then(|n| n.rsplit_once('#'))
                    .is_some_and(|(base, n)| {
                        !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                    });
            if is_temporary && e.path().is_file() && std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    fn path(&self, rel: &str) -> ObjectPath {
        let mut p = self.prefix.clone();
        for part in rel.split('/') {
            p = p.clone().join(part);
        }
        p
    }

    pub async fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<(), SinkError> {
        let path = self.path(rel);
        let mut opts = PutOptions::default();
        if self.typed {
            opts.attributes = Attributes::from_iter([(
                Attribute::ContentType,
                object_store::AttributeValue::from(content_type(rel)),
            )]);
        }
        self.store
            .put_opts(&path, PutPayload::from(bytes), opts)
            .await
            .map(|_| ())
            .map_err(|source| SinkError::Io {
                path: rel.to_string(),
                source,
            })
    }

    /// The object's bytes, or `None` when it does not exist.
    pub async fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, SinkError> {
        let path = self.path(rel);
        match self.store.get(&path).await {
            Ok(r) => r
                .bytes()
                .await
                .map(|b| Some(b.to_vec()))
                .map_err(|source| SinkError::Io {
                    path: rel.to_string(),
                    source,
                }),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(SinkError::Io {
                path: rel.to_string(),
                source,
            }),
        }
    }

    /// The objects' bytes in the order given, 16 read at a time ahead of the consumer (a site
    /// check reads thousands of small files: one at a time, it waits on each).
    pub fn get_all(
        &self,
        rels: Vec<String>,
    ) -> impl futures::Stream<Item = (String, Result<Option<Vec<u8>>, SinkError>)> + Send + '_ {
        use futures::StreamExt;
        let reads: Vec<_> = rels
            .into_iter()
            .map(|rel| async move {
                let bytes = self.get(&rel).await;
                (rel, bytes)
            })
            .collect();
        futures::stream::iter(reads).buffered(16)
    }

    pub async fn delete(&self, rel: &str) -> Result<(), SinkError> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(SinkError::Io {
                path: rel.to_string(),
                source,
            }),
        }
    }

    /// Every object's path under the sink (relative, `/`-separated), in name order.
    pub async fn list(&self) -> Result<Vec<String>, SinkError> {
        use futures::TryStreamExt;
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(prefix)
            .try_collect()
            .await
            .map_err(|source| SinkError::Io {
                path: self.url.clone(),
                source,
            })?;
        let base = self.prefix.as_ref();
        let mut out: Vec<String> = metas
            .into_iter()
            .map(|m| {
                let full = m.location.as_ref();
                full.strip_prefix(base)
                    .unwrap_or(full)
                    .trim_start_matches('/')
                    .to_string()
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Writes `bytes` unless the object already holds exactly them; true when written.
    pub async fn put_if_changed(&self, rel: &str, bytes: Vec<u8>) -> Result<bool, SinkError> {
        if self.get(rel).await?.as_deref() == Some(bytes.as_slice()) {
            return Ok(false);
        }
        self.put(rel, bytes).await?;
        Ok(true)
    }
}

/// Content-Type by file extension.
pub fn content_type(rel: &str) -> &'static str {
    match rel.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("css") => "text/css",
        _ => "application/octet-stream",
    }
}
