// SPDX-License-Identifier: MIT OR Apache-2.0
//! No secret in `Debug` output (issue 17 item 4): every secret a record holds — each path
//! [`seal::SECRET_PATHS`] seals, and every hash (recovery codes, app passwords, the mailed
//! code) — and every other type that carries a secret in the daemon: a login step showing
//! a key or recovery codes, a code mail, the store key, the database connection settings
//! with their password, the importers' parsed files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use twostep_config::Algorithm;
use twostep_proto::{Accept, Step, Verdict};

use super::apppw::{AppPassword, LastUse};
use super::email::{EmailCode, EmailState, Purpose};
use super::mail::Outgoing;
use super::record::{Pending, Record, Secret, TotpKey};
use super::recovery::StoredCode;
use super::seal::{self, StoreKey};
use super::UnixTime;

const KEY_A: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const KEY_B: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U";

fn key(secret: &str) -> TotpKey {
    TotpKey {
        secret: Secret(secret.into()),
        algorithm: Algorithm::SHA1,
        digits: 6,
        period: 30,
        created: UnixTime(1),
    }
}

/// A record with every kind of secret set.
fn full_record() -> Record {
    let mut r = Record::for_account("alice", 1000);
    r.replace_authenticators(key(KEY_A), 1, UnixTime(1));
    r.pending = Some(Pending {
        key: key(KEY_B),
        expires: UnixTime(2),
        name: None,
        replay_mark: None,
    });
    r.recovery = vec![StoredCode {
        id: "abc".into(),
        hash: "$argon2id$v=19$m=19456,t=2,p=1$cmVjb3ZlcnlzYWx0$UkVDT1ZFUllIQVNI".into(),
        used: None,
    }];
    r.app_passwords = vec![AppPassword {
        name: "mail".into(),
        id: "qwert".into(),
        hash: "$argon2id$v=19$m=19456,t=2,p=1$YXBwc2FsdA$QVBQUEFTU1dPUkRIQVNI".into(),
        services: vec!["imap".into()],
        created: UnixTime(1),
        expires: None,
        revoked: None,
        last_used: Some(LastUse {
            at: UnixTime(2),
            service: "imap".into(),
            rhost: "192.0.2.1".into(),
        }),
        expiry_noticed: None,
    }];
    r.email = Some(EmailState {
        address: Some("alice@example.org".into()),
        pending: None,
        code: Some(EmailCode {
            purpose: Purpose::Login,
            salt: "73616c7473616c7473616c7473616c74".into(),
            hash: "6d61696c6564636f646568617368".into(),
            expires: UnixTime(3),
        }),
        sent: vec![UnixTime(1)],
    });
    r
}

/// Every string at `path` in `v` (`*` = every element of an array).
fn at_path<'a>(v: &'a serde_json::Value, path: &[&str], out: &mut Vec<&'a str>) {
    match path.split_first() {
        None => {
            if let Some(s) = v.as_str() {
                out.push(s);
            }
        }
        Some((&"*", rest)) => {
            for e in v.as_array().into_iter().flatten() {
                at_path(e, rest, out);
            }
        }
        Some((name, rest)) => {
            if let Some(e) = v.get(*name) {
                at_path(e, rest, out);
            }
        }
    }
}

/// Every string under a key named `hash` or `salt`, anywhere in `v`.
fn hashes<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, e) in m {
                match (k.as_str(), e.as_str()) {
                    ("hash" | "salt", Some(s)) => out.push(s),
                    _ => hashes(e, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|e| hashes(e, out)),
        _ => {}
    }
}

#[test]
fn a_record_shows_none_of_its_secrets_in_debug() {
    let r = full_record();
    let json = serde_json::to_value(&r).unwrap();
    let mut secrets = Vec::new();
    for path in seal::SECRET_PATHS {
        at_path(&json, path, &mut secrets);
    }
    hashes(&json, &mut secrets);
    // Both keys, the mailed code's hash (a sealed path and a hash), its salt, the recovery
    // code's and the app password's hashes: the record above really holds each kind.
    assert!(secrets.len() >= 6, "{secrets:?}");
    let shown = format!("{r:?}\n{r:#?}");
    for s in secrets {
        assert!(s.len() >= 16, "a secret long enough to be found: {s}");
        assert!(!shown.contains(s), "{s} in {shown}");
    }
    assert!(
        shown.contains("alice@example.org"),
        "the rest is still shown"
    );
}

#[test]
fn nothing_else_that_carries_a_secret_shows_it_in_debug() {
    let code = "493817";
    let codes = "k3m9-x7q2-p4w8\n  r5t6-y8u1-i9o0";
    let step = Step::Prompt {
        message: format!("enter this key by hand: {KEY_A}\n  {codes}"),
        prompt: "Press Enter once you have saved them: ".into(),
        accept: Accept::Acknowledge,
    };
    let done = Step::Done {
        verdict: Verdict::Success,
        message: format!("your new codes: {codes}"),
    };
    let mail = Outgoing {
        to: "alice@example.org".into(),
        subject: "Your login code".into(),
        body: format!("Your code is {code}."),
    };
    let raw = [0x5a_u8; 32];
    let store_key = StoreKey::from_bytes(&raw);
    let raw_hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut pg: tokio_postgres::Config = "host=127.0.0.1 user=twostep".parse().unwrap();
    pg.password("database-password-0xC0FFEE");
    let ga = crate::import::google_authenticator::parse(
        format!("{KEY_A}\n\" TOTP_AUTH\n81726354\n").as_bytes(),
    )
    .unwrap();
    let oath =
        crate::import::oath::parse(b"HOTP/T30 alice - 3132333435363738393031323334353637383930\n")
            .unwrap();
    let shown = format!(
        "{step:?} {step:#?} {done:?} {mail:?} {mail:#?} {store_key:?} {pg:?} {ga:?} {oath:?}"
    );
    for secret in [
        KEY_A,
        "k3m9-x7q2",
        "r5t6",
        code,
        &raw_hex,
        "5a5a5a",
        "database-password",
        "81726354",
        "3132333435",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}
