//! Ids from the operating system's random source. Never from the clock or a counter:
//! without a random source there is no id, and the caller says so.

/// `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| format!("no random source for an id: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
