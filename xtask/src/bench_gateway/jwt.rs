//! The JWT keys and tokens of the benchmark, made with the `openssl` CLI
//! before the run: an RSA 2048 and an ECDSA P-256 key pair, and one token
//! signed with each (RS256, ES256), valid for years.

use super::configs::{ES256_PUBLIC, RS256_PUBLIC, Tokens};
use anyhow::{Context, Result, bail};
use std::{path::Path, process::Command, time::SystemTime};

/// How long the tokens stay valid.
const VALID_SECS: u64 = 10 * 365 * 86_400;

/// Makes both key pairs in `dir` (the public keys under the names the
/// configurations use) and signs one token with each private key.
pub fn make(dir: &Path) -> Result<Tokens> {
    let rsa_key = dir.join("jwt-rs256.key.pem");
    let ec_key = dir.join("jwt-es256.key.pem");
    openssl(
        Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&rsa_key)
            .arg("2048"),
    )?;
    openssl(
        Command::new("openssl")
            .args(["rsa", "-in"])
            .arg(&rsa_key)
            .args(["-pubout", "-out"])
            .arg(dir.join(RS256_PUBLIC)),
    )?;
    openssl(
        Command::new("openssl")
            .args([
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
            ])
            .arg(&ec_key),
    )?;
    openssl(
        Command::new("openssl")
            .args(["pkey", "-in"])
            .arg(&ec_key)
            .args(["-pubout", "-out"])
            .arg(dir.join(ES256_PUBLIC)),
    )?;
    Ok(Tokens {
        rs256: sign(dir, "RS256", &rsa_key)?,
        es256: sign(dir, "ES256", &ec_key)?,
    })
}

/// A JWT (`alg` RS256 or ES256) signed with the private key in `key`:
/// `sub` the benchmark's consumer, `iat` now, `exp` years ahead.
fn sign(dir: &Path, alg: &str, key: &Path) -> Result<String> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
    let claims = format!(
        r#"{{"sub":"{sub}","iat":{now},"exp":{exp}}}"#,
        sub = super::configs::CONSUMER,
        exp = now + VALID_SECS,
    );
    let input = format!(
        "{}.{}",
        base64url(header.as_bytes()),
        base64url(claims.as_bytes())
    );
    let lower = alg.to_ascii_lowercase();
    let message = dir.join(format!("jwt-{lower}.input"));
    let signature = dir.join(format!("jwt-{lower}.sig"));
    std::fs::write(&message, &input)?;
    openssl(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(key)
            .arg("-out")
            .arg(&signature)
            .arg(&message),
    )?;
    let der_or_raw = std::fs::read(&signature)?;
    let raw = match alg {
        // RSASSA-PKCS1-v1_5: the signature as is.
        "RS256" => der_or_raw,
        // OpenSSL writes ECDSA signatures in DER; JWS wants r || s.
        "ES256" => ecdsa_der_to_raw(&der_or_raw, 32)?,
        other => bail!("cannot sign {other}"),
    };
    Ok(format!("{input}.{}", base64url(&raw)))
}

/// Runs an `openssl` command, failing with its error output.
fn openssl(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().context("running openssl")?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Base64url without padding (RFC 7515 §2).
pub fn base64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = (u32::from(chunk[0]) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        // 1 byte gives 2 characters, 2 give 3, 3 give 4.
        for i in 0..=chunk.len() {
            let sextet = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET[sextet as usize]));
        }
    }
    out
}

/// An ECDSA signature in DER (`SEQUENCE { INTEGER r, INTEGER s }`) as
/// JWS wants it: r and s big-endian, each left-padded to `width` bytes.
pub fn ecdsa_der_to_raw(der: &[u8], width: usize) -> Result<Vec<u8>> {
    let (mut body, rest) = der_take(der, 0x30)?;
    if !rest.is_empty() {
        bail!("bytes after the ECDSA signature's SEQUENCE");
    }
    let mut raw = Vec::with_capacity(2 * width);
    for _ in 0..2 {
        let (int, after) = der_take(body, 0x02)?;
        body = after;
        // DER adds a leading zero byte to keep a positive INTEGER's top bit
        // clear; strip every leading zero, then pad to the width.
        let first = int.iter().position(|b| *b != 0).unwrap_or(int.len());
        let digits = &int[first..];
        if digits.len() > width {
            bail!(
                "an ECDSA signature INTEGER of {} bytes, more than {width}",
                digits.len()
            );
        }
        raw.resize(raw.len() + width - digits.len(), 0);
        raw.extend_from_slice(digits);
    }
    if !body.is_empty() {
        bail!("more than two INTEGERs in the ECDSA signature");
    }
    Ok(raw)
}

/// The content of one DER element with tag `tag` at the start of `input`,
/// and what follows it.
fn der_take(input: &[u8], tag: u8) -> Result<(&[u8], &[u8])> {
    let [found, first, rest @ ..] = input else {
        bail!("truncated DER");
    };
    if *found != tag {
        bail!("DER tag {found:#04x} where {tag:#04x} was expected");
    }
    let (len, rest) = if *first < 0x80 {
        (usize::from(*first), rest)
    } else {
        let n = usize::from(*first & 0x7f);
        if n == 0 || n > 2 || rest.len() < n {
            bail!("bad DER length");
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        bail!("truncated DER: {len} bytes announced, {} there", rest.len());
    }
    Ok(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_without_padding() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(
            base64url(br#"{"alg":"RS256","typ":"JWT"}"#),
            "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"
        );
    }

    #[test]
    fn der_ecdsa_signatures_become_r_then_s() {
        // r with a leading zero (its top bit is set), s short (31 bytes).
        let mut r = vec![0x00, 0x80];
        r.extend([0x11; 31]);
        let s = vec![0x22; 31];
        let mut der = vec![0x30, (2 + r.len() + 2 + s.len()) as u8];
        der.extend([0x02, r.len() as u8]);
        der.extend(&r);
        der.extend([0x02, s.len() as u8]);
        der.extend(&s);
        let raw = ecdsa_der_to_raw(&der, 32).unwrap();
        assert_eq!(raw.len(), 64);
        assert_eq!(raw[0], 0x80);
        assert_eq!(&raw[1..32], &[0x11; 31]);
        assert_eq!(raw[32], 0x00);
        assert_eq!(&raw[33..], &[0x22; 31]);
    }

    #[test]
    fn long_form_lengths_and_bad_input() {
        // A SEQUENCE length in the long form (0x81 NN).
        let der = [0x30, 0x81, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x07];
        let raw = ecdsa_der_to_raw(&der, 2).unwrap();
        assert_eq!(raw, [0, 5, 0, 7]);
        assert!(ecdsa_der_to_raw(&[0x30, 0x03, 0x02, 0x01], 32).is_err());
        assert!(ecdsa_der_to_raw(&[0x31, 0x00], 32).is_err());
        assert!(ecdsa_der_to_raw(&der[..5], 2).is_err());
        // An INTEGER wider than the curve.
        let wide = [0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x07];
        assert!(ecdsa_der_to_raw(&wide, 0).is_err());
    }
}
