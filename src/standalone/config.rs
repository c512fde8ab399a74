//! The manifests standalone mode runs from: loaded exactly as `finrep validate` loads them,
//! read again when a file changes or on SIGHUP, and a bad edit never replaces the last good
//! set.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::manifest::{self, LoadOptions, ManifestError};
use crate::validation::ResourceSet;

/// The configuration directory and the last good set read from it.
pub struct ConfigSource {
    paths: Vec<PathBuf>,
    options: LoadOptions,
    /// Digest of the files behind `current` (or of the last refused edit, so one bad edit
    /// is reported once, not on every look).
    seen: [u8; 32],
    current: Arc<ResourceSet>,
}

/// What a look at the configuration found.
#[derive(Debug)]
pub enum Reload {
    Unchanged,
    Loaded(Arc<ResourceSet>),
    /// The files changed but do not load; the last good set stays in force.
    Refused(ManifestError),
}

impl ConfigSource {
    /// Loads the configuration; any error refuses to start, with `validate`'s messages.
    pub fn open(dir: PathBuf, namespace: &str) -> Result<Self, ManifestError> {
        let paths = vec![dir];
        let options = LoadOptions {
            default_namespace: namespace.to_string(),
            complete: Some(true),
        };
        let seen = digest(&paths)?;
        let loaded = manifest::load_valid(&paths, &options)?;
        Ok(Self {
            paths,
            options,
            seen,
            current: Arc::new(loaded.set),
        })
    }

    /// The directory the manifests are read from.
    pub fn dir(&self) -> &Path {
        &self.paths[0]
    }

    /// The set in force.
    pub fn current(&self) -> Arc<ResourceSet> {
        self.current.clone()
    }

    /// Reads the files again when they changed (or always, with `force`: SIGHUP).
    pub fn reload(&mut self, force: bool) -> Reload {
        let seen = match digest(&self.paths) {
            Ok(d) => d,
            Err(e) => return Reload::Refused(e),
        };
        if seen == self.seen && !force {
            return Reload::Unchanged;
        }
        self.seen = seen;
        match manifest::load_valid(&self.paths, &self.options) {
            Ok(loaded) => {
                self.current = Arc::new(loaded.set);
                Reload::Loaded(self.current.clone())
            }
            Err(e) => Reload::Refused(e),
        }
    }
}

/// A digest of every manifest file's path and content. Polling content rather than watching
/// for events works where inotify does not (Docker Desktop and WSL bind mounts).
fn digest(paths: &[PathBuf]) -> Result<[u8; 32], ManifestError> {
    let mut hash = Sha256::new();
    for file in manifest::manifest_files(paths)? {
        let bytes = std::fs::read(&file).map_err(|source| ManifestError::Read {
            path: file.clone(),
            source,
        })?;
        hash.update(file.to_string_lossy().as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    Ok(hash.finalize().into())
}
