//! Sizes on the command line: bytes, or a number with K, M or G (binary
//! units, as qemu and the kernel read them). Guest memory and the bench's
//! file size both use it.

use anyhow::{anyhow, bail, Context, Result};

/// Parses `s` into bytes: "131072", "128k", "256M", "64MiB", "1G".
pub fn parse_bytes(s: &str) -> Result<u64> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, ' '),
    };
    let shift = match unit {
        ' ' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => bail!("{s:?}: unknown unit (use K, M or G)"),
    };
    let n: u64 = num
        .trim()
        .parse()
        .with_context(|| format!("{s:?} is not a size"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| anyhow!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_units() {
        assert_eq!(parse_bytes("2G").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("1000M").unwrap(), 1000 << 20);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert!(parse_bytes("1T").is_err());
        assert!(parse_bytes("lots").is_err());
    }
}
