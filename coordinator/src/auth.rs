//! The bearer token that guards the job API: created on first start in
//! `DATA/token` (mode 0600), compared in constant time.

use std::path::{Path, PathBuf};

use anyhow::Context;
use subtle::ConstantTimeEq;

pub const TOKEN_FILE: &str = "token";

/// Where the token lives under a data directory.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// Reads the token under `data_dir`, creating a random one if there is none.
/// Returns the token and whether it was just created.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<(String, bool)> {
    let path = token_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok((token.trim().to_string(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the token file {}", path.display()));
        }
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let token = hex::encode(rand::random::<[u8; 24]>());
    write_private(&path, &token)
        .with_context(|| format!("cannot write the token file {}", path.display()))?;
    Ok((token, true))
}

/// The secret that keys the users' token hashes, in `DATA/token.key`
/// (mode 0600), created on first start. Lost, every token but the first
/// admin's (`DATA/token`, hashed again at each start) stops working.
pub fn load_or_create_key(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = data_dir.join("token.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut key = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut key).with_context(|| {
                format!("{} is not 64 hex digits; delete it to make a new one (every user's token but the first admin's then stops working)", path.display())
            })?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
            let key: [u8; 32] = rand::random();
            write_private(&path, &hex::encode(key))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `contents` to `path`, readable by its owner only.
#[cfg(unix)]
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(not(unix))]
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{contents}\n"))
}

/// Whether a presented token is the token, compared in constant time.
pub fn token_matches(presented: &str, token: &str) -> bool {
    presented.trim().as_bytes().ct_eq(token.as_bytes()).into()
}

/// Whether an `Authorization` header value carries the token.
/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    header.and_then(|h| h.strip_prefix("Bearer "))
}

pub fn authorized(header: Option<&str>, token: &str) -> bool {
    let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    token_matches(presented, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_created_once_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (token, created) = load_or_create(dir.path()).unwrap();
        assert!(created);
        assert_eq!(token.len(), 48);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(token_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, created) = load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(again, token);
    }

    #[test]
    fn only_the_exact_bearer_token_is_accepted() {
        assert!(authorized(Some("Bearer s3cret"), "s3cret"));
        assert!(!authorized(Some("Bearer s3cre"), "s3cret"));
        assert!(!authorized(Some("Bearer s3cretx"), "s3cret"));
        assert!(!authorized(Some("s3cret"), "s3cret"));
        assert!(!authorized(Some("Basic s3cret"), "s3cret"));
        assert!(!authorized(None, "s3cret"));
    }
}
