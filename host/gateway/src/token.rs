//! The user's gateway token: 32 random bytes, URL-safe base64, made at first start and
//! kept at `<user workspace>/ipc/gateway-token` (mode 0600), or `OXYDRA_GATEWAY_TOKEN`.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The environment variable that, when set, is the token (no file is written).
pub const TOKEN_ENV: &str = "OXYDRA_GATEWAY_TOKEN";

/// Where the token of the user whose workspace is `ws` lives.
pub fn token_path(ws: &Path) -> PathBuf {
    ws.join("ipc").join("gateway-token")
}

/// Where `serve` writes its URL.
pub fn endpoint_path(ws: &Path) -> PathBuf {
    ws.join("ipc").join("gateway-endpoint")
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Where a token came from, to say so in errors.
#[derive(Debug, Clone)]
pub struct Token {
    pub value: String,
    /// `the file …` or `the environment variable OXYDRA_GATEWAY_TOKEN`.
    pub source: String,
}

fn io(path: &Path, e: std::io::Error) -> TokenError {
    TokenError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The token from `env` when given, else the file, made (0600) if missing.
pub fn load_or_create(ws: &Path, env: Option<String>) -> Result<Token, TokenError> {
    if let Some(v) = env {
        let v = v.trim().to_string();
        if v.len() < 16 {
            return Err(TokenError::Invalid(format!(
                "{TOKEN_ENV} is set but shorter than 16 characters; unset it to use a generated token"
            )));
        }
        return Ok(Token {
            value: v,
            source: format!("the environment variable {TOKEN_ENV}"),
        });
    }
    let path = token_path(ws);
    let source = format!("the file {}", path.display());
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => {
            check_private(&path)?;
            return Ok(Token {
                value: t.trim().to_string(),
                source,
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path, e)),
    }
    let dir = ws.join("ipc");
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let value = generate()?;
    // Created only if absent (a hard link fails when the name exists), so two serves
    // starting at once agree on one token: the loser reads the winner's.
    let tmp = dir.join(format!("gateway-token.{}.new", std::process::id()));
    write_private(&tmp, &value)?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(Token { value, source }),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(ws).and_then(|t| {
            check_private(&path)?;
            Ok(t)
        }),
        Err(e) => Err(io(&path, e)),
    }
}

/// Read an existing token (clients: the TUI).
pub fn read(ws: &Path) -> Result<Token, TokenError> {
    let path = token_path(ws);
    let t = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    Ok(Token {
        value: t.trim().to_string(),
        source: format!("the file {}", path.display()),
    })
}

fn generate() -> Result<String, TokenError> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf)
        .map_err(|e| TokenError::Invalid(format!("no random source for the token: {e}")))?;
    Ok(base64url(&buf))
}

/// Write `text` to `path` readable by its owner only, replacing it atomically.
pub fn write_private(path: &Path, text: &str) -> Result<(), TokenError> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), TokenError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| io(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(TokenError::Invalid(format!(
            "{} is readable by others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), TokenError> {
    Ok(())
}

/// Compare in constant time (the length is not secret).
pub fn matches(expected: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64url_without_padding() {
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(generate().unwrap().len(), 43);
    }

    #[test]
    fn token_is_made_once_private_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let a = load_or_create(d.path(), None).unwrap();
        let b = load_or_create(d.path(), None).unwrap();
        assert_eq!(a.value, b.value);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(token_path(d.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(token_path(d.path()), std::fs::Permissions::from_mode(0o644))
                .unwrap();
            assert!(load_or_create(d.path(), None).is_err());
        }
        assert!(matches(&a.value, &a.value.clone()));
        assert!(!matches(&a.value, "short"));
    }

    #[test]
    fn the_environment_token_wins_and_writes_no_file() {
        let d = tempfile::tempdir().unwrap();
        let t = load_or_create(d.path(), Some(format!(" {} \n", "k".repeat(20)))).unwrap();
        assert_eq!(t.value, "k".repeat(20));
        assert!(t.source.contains(TOKEN_ENV), "{}", t.source);
        assert!(!token_path(d.path()).exists());
        let e = load_or_create(d.path(), Some("short".into())).unwrap_err();
        assert!(e.to_string().contains(TOKEN_ENV), "{e}");
        // The file token names its path, for the errors clients see.
        let t = load_or_create(d.path(), None).unwrap();
        assert!(
            t.source
                .contains(&token_path(d.path()).display().to_string())
        );
        assert_eq!(read(d.path()).unwrap().value, t.value);
    }
}
