//! Reading the config directory as one consistent view.
//!
//! Kubernetes mounts a ConfigMap, Secret or projected volume as a directory
//! whose files never change in place: kubelet writes each new version into a
//! fresh hidden directory (`..2026_11_23_10_00_00.123456789/`), points a
//! `..data_tmp` symlink at it, renames that over `..data`, then deletes the old
//! directory. The visible files (`docker-mcp.yaml -> ..data/docker-mcp.yaml`)
//! stay put. Reading them one by one through those links can mix two versions
//! (the catalog of one, the secrets of the next), so a directory with a
//! `..data` link is read through the directory it points to, and read again if
//! `..data` moved meanwhile. The files of a version are complete before the
//! swap makes them visible.
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{CATALOG_FILE, CONFIG_FILE, REGISTRY_FILE, SECRETS_FILE, SourcePos};
use crate::{Error, Result};

/// The symlink kubelet swaps to publish a new version of a volume.
pub const DATA_LINK: &str = "..data";

/// How often a read starts over because `..data` moved under it. Kubelet
/// publishes at most once per sync (about a minute); each swap also wakes the
/// watcher, so giving up here only defers the read to that wake-up.
const MAX_READS: usize = 8;

/// The texts of the input files (`None`: the file does not exist).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub catalog: Option<String>,
    pub registry: Option<String>,
    pub config: Option<String>,
    pub secrets: Option<String>,
    /// Read from a kubelet-published version: complete by construction.
    pub published: bool,
}

impl Inputs {
    /// Reads every input of `dir`, through `..data` when kubelet manages it.
    pub fn read(dir: &Path) -> Result<Inputs> {
        let (mut inputs, published) = read_consistent(dir, |root| {
            Ok(Inputs {
                catalog: read_optional(&root.join(CATALOG_FILE))?,
                registry: read_optional(&root.join(REGISTRY_FILE))?,
                config: read_optional(&root.join(CONFIG_FILE))?,
                secrets: read_optional(&root.join(SECRETS_FILE))?,
                published: false,
            })
        })?;
        inputs.published = published;
        Ok(inputs)
    }
}

/// Runs `read` on one version of `dir`: `dir` itself, or the directory its
/// `..data` link points to, again while the link moves during the read.
/// Also says whether the view was a kubelet-published one.
pub fn read_consistent<T>(
    dir: &Path,
    mut read: impl FnMut(&Path) -> Result<T>,
) -> Result<(T, bool)> {
    let link = dir.join(DATA_LINK);
    for _ in 0..MAX_READS {
        let Some(before) = data_target(&link)? else {
            return Ok((read(dir)?, false));
        };
        // An error from a version deleted under the read is no error: only a
        // read that saw `..data` unchanged throughout counts, Ok or not.
        let result = read(&dir.join(&before));
        if data_target(&link)?.as_ref() == Some(&before) {
            return result.map(|t| (t, true));
        }
        tracing::debug!(dir = %dir.display(), "config directory published anew while being read; reading it again");
    }
    Err(Error::Config {
        pos: SourcePos::file(&link),
        message: format!(
            "a new version was published {MAX_READS} times while it was being read; \
             reading it again at the next change"
        ),
    })
}

/// Where `..data` points, or `None` when there is no such link (a plain
/// directory, not a kubelet volume).
fn data_target(link: &Path) -> Result<Option<PathBuf>> {
    match std::fs::read_link(link) {
        Ok(t) => Ok(Some(t)),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidInput) => Ok(None),
        Err(e) => Err(Error::io(link, e)),
    }
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A kubelet volume holding one version, `..v1`, with a visible catalog.
    fn volume(catalog: &str, secrets: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        publish(dir.path(), "..v1", catalog, secrets);
        symlink(
            format!("{DATA_LINK}/{CATALOG_FILE}"),
            dir.path().join(CATALOG_FILE),
        )
        .unwrap();
        symlink(
            format!("{DATA_LINK}/{SECRETS_FILE}"),
            dir.path().join(SECRETS_FILE),
        )
        .unwrap();
        dir
    }

    /// Kubelet's swap: a new version directory, `..data_tmp` renamed over
    /// `..data`, then the old version removed.
    fn publish(dir: &Path, version: &str, catalog: &str, secrets: &str) {
        let old = std::fs::read_link(dir.join(DATA_LINK)).ok();
        std::fs::create_dir(dir.join(version)).unwrap();
        std::fs::write(dir.join(version).join(CATALOG_FILE), catalog).unwrap();
        std::fs::write(dir.join(version).join(SECRETS_FILE), secrets).unwrap();
        symlink(version, dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join(DATA_LINK)).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(dir.join(old)).unwrap();
        }
    }

    #[test]
    fn a_plain_directory_is_read_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CATALOG_FILE), "a\n").unwrap();
        let inputs = Inputs::read(dir.path()).unwrap();
        assert_eq!(inputs.catalog.as_deref(), Some("a\n"));
        assert_eq!(inputs.secrets, None);
        assert!(!inputs.published);
    }

    #[test]
    fn a_kubelet_volume_is_read_through_data() {
        let dir = volume("catalog 1", "secrets 1");
        let inputs = Inputs::read(dir.path()).unwrap();
        assert_eq!(inputs.catalog.as_deref(), Some("catalog 1"));
        assert_eq!(inputs.secrets.as_deref(), Some("secrets 1"));
        assert!(inputs.published);
    }

    /// The torn read: the catalog of version 1 has been read when version 2
    /// is published (and version 1 deleted) before the secrets are read.
    /// Through the visible links that read would pair catalog 1 with
    /// secrets 2; it is started over and sees version 2 whole.
    #[test]
    fn a_swap_during_the_read_starts_it_over() {
        let dir = volume("catalog 1", "secrets 1");
        let mut reads = 0;
        let (seen, published) = read_consistent(dir.path(), |root| {
            reads += 1;
            let catalog = std::fs::read_to_string(root.join(CATALOG_FILE)).unwrap();
            if reads == 1 {
                publish(dir.path(), "..v2", "catalog 2", "secrets 2");
            }
            // Version 1 is gone now: the first read finds no secrets.
            let secrets = read_optional(&root.join(SECRETS_FILE))?;
            Ok((catalog, secrets))
        })
        .unwrap();
        assert_eq!(reads, 2);
        assert!(published);
        assert_eq!(seen, ("catalog 2".into(), Some("secrets 2".into())));
        // Through the visible links the same interleaving tears.
        let torn_catalog = std::fs::read_to_string(dir.path().join(CATALOG_FILE)).unwrap();
        publish(dir.path(), "..v3", "catalog 3", "secrets 3");
        let torn_secrets = std::fs::read_to_string(dir.path().join(SECRETS_FILE)).unwrap();
        assert_eq!(
            (torn_catalog.as_str(), torn_secrets.as_str()),
            ("catalog 2", "secrets 3")
        );
    }

    #[test]
    fn a_volume_that_never_holds_still_is_an_error_not_a_mix() {
        let dir = volume("catalog 1", "secrets 1");
        let mut n = 1;
        let err = read_consistent(dir.path(), |_| {
            n += 1;
            publish(dir.path(), &format!("..v{n}"), "c", "s");
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("..data"), "{err}");
        assert_eq!(n, 1 + MAX_READS);
    }
}
