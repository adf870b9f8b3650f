// SPDX-License-Identifier: MIT OR Apache-2.0
//! RFC 4226/6238 codes, computed by the benchmark itself for every login (SHA1, 6 digits),
//! and the deterministic per-user secrets every module is given.
//!
//! Cross-checked once per run against `oathtool` (see `run::check_codes_against_oathtool`).

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Bytes of a secret: 160 bits, what twostep and google-authenticator generate.
pub const SECRET_BYTES: usize = 20;

type HmacSha1 = Hmac<Sha1>;

/// HOTP value of `counter` (6 digits).
pub fn hotp(secret: &[u8], counter: u64) -> u32 {
    // An HMAC key of any length is valid, so this cannot fail.
    let Ok(mut mac) = HmacSha1::new_from_slice(secret) else {
        return 0;
    };
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let bin = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    bin % 1_000_000
}

/// The 6-digit code of time step `step`, zero-padded.
pub fn code(secret: &[u8], step: u64) -> [u8; 6] {
    let mut v = hotp(secret, step);
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        // v % 10 < 10, so the cast is lossless.
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out
}

/// A 6-digit code that matches none of the steps `lo..=hi` (a wrong guess), derived from `seed`.
pub fn wrong_code(secret: &[u8], lo: u64, hi: u64, seed: u64) -> [u8; 6] {
    let mut guess = (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) % 1_000_000;
    loop {
        let taken = (lo..=hi).any(|s| u64::from(hotp(secret, s)) == guess);
        if !taken {
            break;
        }
        guess = (guess + 1) % 1_000_000;
    }
    let mut out = [b'0'; 6];
    let mut v = guess;
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out
}

/// The secret of bench user `index`: HMAC-SHA1 of the index under a fixed key, so every
/// run (and every module) uses the same secrets.
pub fn secret_for(index: u32) -> [u8; SECRET_BYTES] {
    let Ok(mut mac) = HmacSha1::new_from_slice(b"twostep-bench secrets v1") else {
        return [0; SECRET_BYTES];
    };
    mac.update(&index.to_be_bytes());
    mac.finalize().into_bytes().into()
}

/// RFC 4648 base32, upper case, no padding (what authenticator apps and both peers read).
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u64 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        buffer = (buffer << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4226_appendix_d() {
        let secret = b"12345678901234567890";
        let want = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, w) in want.iter().enumerate() {
            assert_eq!(hotp(secret, counter as u64), *w);
        }
        assert_eq!(&code(secret, 0), b"755224");
    }

    #[test]
    fn rfc6238_sha1_six_digits() {
        // Appendix B, time 59 → 94287082 (8 digits); the last six are the 6-digit code.
        assert_eq!(&code(b"12345678901234567890", 59 / 30), b"287082");
    }

    #[test]
    fn wrong_codes_miss_the_window() {
        let s = secret_for(7);
        for seed in 0..200 {
            let w = wrong_code(&s, 100, 102, seed);
            for step in 100..=102 {
                assert_ne!(w, code(&s, step));
            }
        }
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(&[0u8; 20]).len(), 32);
    }
}
