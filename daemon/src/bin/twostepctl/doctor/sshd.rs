// SPDX-License-Identifier: MIT OR Apache-2.0
//! sshd: its configuration files read with file and line (`Include` and `Match`
//! followed), its effective values (`sshd -T`), and the rules under which SSH logins reach
//! pam_twostep and ask for the code ([`analyze_sshd`]).

use std::collections::{BTreeMap, BTreeSet};

use super::findings::{merge, Finding, Loc, Severity};
use super::io::{join, Files};
use super::pam_analysis::ServiceInfo;

/// sshd's own limit for nested `Include`.
const MAX_SSHD_INCLUDE_DEPTH: usize = 16;
/// Where sshd resolves relative `Include` paths.
pub(super) const SSHD_DIR: &str = "/etc/ssh";

/// One line of sshd's configuration.
#[derive(Clone, Debug)]
struct SshdLine {
    at: Loc,
    /// Lower case.
    keyword: String,
    args: Vec<String>,
    /// The `Match` block it is in (index into `SshdConfig::blocks`).
    block: Option<usize>,
}

#[derive(Clone, Debug)]
struct MatchBlock {
    at: Loc,
    criteria: String,
}

/// sshd's configuration files as written (for locations and `Match` blocks; the values
/// in force come from `sshd -T`).
#[derive(Clone, Debug, Default)]
pub struct SshdConfig {
    lines: Vec<SshdLine>,
    blocks: Vec<MatchBlock>,
}

/// `Keyword args…` of one sshd config line (`Keyword=value` too), or `None` for blanks
/// and comments. Quotes group words; a word starting with `#` ends the line.
fn sshd_words(line: &str) -> Option<(String, Vec<String>)> {
    let s = line.trim_start();
    if s.is_empty() || s.starts_with('#') {
        return None;
    }
    let end = s
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(s.len());
    let keyword = s[..end].to_ascii_lowercase();
    let mut rest = s[end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => break,
            Some(_) => {}
        }
        let mut word = String::new();
        let mut quote = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => {
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                }
                (_, c) => word.push(c),
            }
        }
        args.push(word);
    }
    Some((keyword, args))
}

/// `*` and `?` as glob(3) matches them in one path component.
fn wildmatch(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            wildmatch(rest, name) || (!name.is_empty() && wildmatch(pattern, &name[1..]))
        }
        (Some((b'?', rest)), Some((_, n))) => wildmatch(rest, n),
        (Some((p, rest)), Some((c, n))) if p == c => wildmatch(rest, n),
        _ => false,
    }
}

/// The files an `Include` argument names, in glob(3) order.
fn sshd_include(files: &dyn Files, arg: &str) -> Vec<String> {
    let path = join(SSHD_DIR, arg);
    let Some((dir, pattern)) = path.rsplit_once('/') else {
        return Vec::new();
    };
    if !pattern.contains(['*', '?']) {
        return if files.exists(&path) {
            vec![path]
        } else {
            Vec::new()
        };
    }
    files
        .list(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.') || pattern.starts_with('.'))
        .filter(|n| wildmatch(pattern.as_bytes(), n.as_bytes()))
        .map(|n| format!("{dir}/{n}"))
        .collect()
}

/// Reads sshd's configuration from `path`, following `Include`.
pub fn read_sshd_config(files: &dyn Files, path: &str) -> SshdConfig {
    let mut config = SshdConfig::default();
    read_sshd_into(files, path, 0, None, &mut config);
    config
}

fn read_sshd_into(
    files: &dyn Files,
    path: &str,
    depth: usize,
    block: Option<usize>,
    config: &mut SshdConfig,
) {
    if depth > MAX_SSHD_INCLUDE_DEPTH {
        return;
    }
    let Ok(text) = files.read(path) else {
        return;
    };
    // Why: sshd restores the Match state after an included file.
    let mut current = block;
    for (i, raw) in text.lines().enumerate() {
        let Some((keyword, args)) = sshd_words(raw) else {
            continue;
        };
        let at = Loc {
            file: path.to_owned(),
            line: i + 1,
        };
        match keyword.as_str() {
            "match" => {
                config.blocks.push(MatchBlock {
                    at,
                    criteria: args.join(" "),
                });
                current = Some(config.blocks.len() - 1);
            }
            "include" => {
                for arg in &args {
                    for file in sshd_include(files, arg) {
                        read_sshd_into(files, &file, depth + 1, current, config);
                    }
                }
            }
            _ => config.lines.push(SshdLine {
                at,
                keyword,
                args,
                block: current,
            }),
        }
    }
}

/// The keywords sshd treats as the same setting.
fn aliases(keyword: &str) -> &'static [&'static str] {
    match keyword {
        "kbdinteractiveauthentication" | "challengeresponseauthentication" => &[
            "kbdinteractiveauthentication",
            "challengeresponseauthentication",
        ],
        "usepam" => &["usepam"],
        "passwordauthentication" => &["passwordauthentication"],
        "pubkeyauthentication" => &["pubkeyauthentication"],
        "hostbasedauthentication" => &["hostbasedauthentication"],
        "gssapiauthentication" => &["gssapiauthentication"],
        "permitemptypasswords" => &["permitemptypasswords"],
        "authenticationmethods" => &["authenticationmethods"],
        _ => &[],
    }
}

impl SshdConfig {
    /// Where the value in force outside `Match` blocks was set: sshd keeps the first.
    fn locate(&self, keyword: &str) -> Option<Loc> {
        let names = aliases(keyword);
        self.lines
            .iter()
            .find(|l| l.block.is_none() && names.contains(&l.keyword.as_str()))
            .map(|l| l.at.clone())
    }
}

/// `sshd -T` output as `keyword → value` (lower case; the first line of a keyword).
pub fn parse_sshd_t(text: &str) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.trim().splitn(2, ' ');
        let (Some(k), v) = (parts.next(), parts.next()) else {
            continue;
        };
        if k.is_empty() {
            continue;
        }
        values
            .entry(k.to_ascii_lowercase())
            .or_insert_with(|| v.unwrap_or("").trim().to_ascii_lowercase());
    }
    if let Some(v) = values.get("challengeresponseauthentication").cloned() {
        values
            .entry("kbdinteractiveauthentication".into())
            .or_insert(v);
    }
    values
}

/// The authentication methods sshd knows, with the keyword that enables each.
const METHODS: [(&str, &str); 6] = [
    ("publickey", "pubkeyauthentication"),
    ("hostbased", "hostbasedauthentication"),
    ("gssapi-with-mic", "gssapiauthentication"),
    ("password", "passwordauthentication"),
    ("keyboard-interactive", "kbdinteractiveauthentication"),
    ("none", "permitemptypasswords"),
];

/// The methods that run the PAM `auth` stack (with `UsePAM yes`).
fn runs_pam(method: &str) -> bool {
    matches!(method, "keyboard-interactive" | "password" | "none")
}

struct SshdValues<'a>(&'a BTreeMap<String, String>);

impl SshdValues<'_> {
    fn yes(&self, keyword: &str, default: bool) -> bool {
        self.0
            .get(keyword)
            .map_or(default, |v| matches!(v.as_str(), "yes" | "true"))
    }

    fn enabled(&self, method: &str) -> bool {
        match method {
            "publickey" => self.yes("pubkeyauthentication", true),
            "hostbased" => self.yes("hostbasedauthentication", false),
            "gssapi-with-mic" => self.yes("gssapiauthentication", false),
            "password" => self.yes("passwordauthentication", true),
            "keyboard-interactive" => self.yes("kbdinteractiveauthentication", true),
            "none" => {
                self.yes("permitemptypasswords", false) && self.yes("passwordauthentication", true)
            }
            _ => false,
        }
    }

    /// `None` for `any`; else the lists, each a set of method names.
    fn method_lists(&self) -> Option<Vec<Vec<String>>> {
        let v = self
            .0
            .get("authenticationmethods")
            .map_or("any", String::as_str);
        if v == "any" || v.is_empty() {
            return None;
        }
        Some(
            v.split_whitespace()
                .map(|list| {
                    list.split(',')
                        .map(|m| m.split(':').next().unwrap_or(m).to_owned())
                        .collect()
                })
                .collect(),
        )
    }

    /// The method lists a client can complete: `any` means every enabled method alone.
    fn usable_lists(&self) -> (bool, Vec<Vec<String>>) {
        match self.method_lists() {
            None => (
                true,
                METHODS
                    .iter()
                    .filter(|(m, _)| self.enabled(m))
                    .map(|(m, _)| vec![(*m).to_owned()])
                    .collect(),
            ),
            Some(lists) => (
                false,
                lists
                    .into_iter()
                    .filter(|l| l.iter().all(|m| self.enabled(m)))
                    .collect(),
            ),
        }
    }
}

/// One sshd rule's verdict, before it gets a location.
struct SshdIssue {
    severity: Severity,
    kind: &'static str,
    message: String,
    /// The keyword whose line is the cause.
    keyword: &'static str,
}

/// The rules over sshd's values, for a PAM stack that reaches pam_twostep.
/// `password_first`: the stack checks a password before the code.
fn sshd_rules(values: &BTreeMap<String, String>, password_first: bool) -> Vec<SshdIssue> {
    let v = SshdValues(values);
    let mut out = Vec::new();
    if !v.yes("usepam", false) {
        out.push(SshdIssue {
            severity: Severity::Error,
            kind: "sshd-usepam-no",
            message: "UsePAM no: sshd never runs the PAM stack, so pam_twostep is never reached and a password or key alone logs in".into(),
            keyword: "usepam",
        });
        return out;
    }
    if !v.yes("kbdinteractiveauthentication", true) {
        out.push(SshdIssue {
            severity: Severity::Error,
            kind: "sshd-kbdinteractive-no",
            message: "KbdInteractiveAuthentication no: PAM prompts never reach the client, so the code cannot be asked (keyboard-interactive logins are impossible; password logins fail for users with a second factor)".into(),
            keyword: "kbdinteractiveauthentication",
        });
    }
    let (any, lists) = v.usable_lists();
    for list in &lists {
        if !list.iter().any(|m| runs_pam(m)) {
            let shown = list.join(",");
            let (message, keyword) = if any {
                let keyword = METHODS
                    .iter()
                    .find(|(m, _)| *m == shown)
                    .map_or("authenticationmethods", |(_, k)| *k);
                (
                    format!("AuthenticationMethods any with `{shown}` enabled: `{shown}` alone logs in, sshd never runs the PAM stack and no code is asked; require `{shown},keyboard-interactive`"),
                    keyword,
                )
            } else {
                (
                    format!("AuthenticationMethods `{shown}` lets a user in with {shown} alone: sshd never runs the PAM stack and no code is asked"),
                    "authenticationmethods",
                )
            };
            out.push(SshdIssue {
                severity: Severity::Error,
                kind: "sshd-method-without-pam",
                message,
                keyword,
            });
        }
    }
    if !password_first {
        for list in &lists {
            let first_factor = list.iter().any(|m| !runs_pam(m));
            if list.iter().any(|m| m == "keyboard-interactive") && !first_factor {
                let shown = if any {
                    "AuthenticationMethods any".to_owned()
                } else {
                    format!("AuthenticationMethods `{}`", list.join(","))
                };
                out.push(SshdIssue {
                    severity: Severity::Error,
                    kind: "sshd-code-alone",
                    message: format!("sshd's PAM stack asks only for the code (no password module before pam_twostep), and {shown} lets keyboard-interactive in on its own: the code alone logs in; use `AuthenticationMethods publickey,keyboard-interactive`"),
                    keyword: "authenticationmethods",
                });
            }
        }
    }
    if lists.iter().any(|l| l.iter().any(|m| m == "password")) {
        out.push(SshdIssue {
            severity: Severity::Warning,
            kind: "sshd-password-authentication",
            message: "PasswordAuthentication yes: sshd's password method runs the PAM stack but can only answer the code prompt with the password, so clients that prefer it fail for users with a second factor (and a 6-digit password counts as a wrong code); pam_twostep lives in the keyboard-interactive path: set it to no".into(),
            keyword: "passwordauthentication",
        });
    }
    out
}

/// The findings about sshd: its values in force (`sshd -T`) and each `Match` block that
/// changes them, for a PAM stack `stack` that reaches pam_twostep.
pub fn analyze_sshd(
    values: &BTreeMap<String, String>,
    config: &SshdConfig,
    stack: &ServiceInfo,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let global = sshd_rules(values, stack.password_first);
    let global_keys: BTreeSet<(&str, String)> =
        global.iter().map(|i| (i.kind, i.message.clone())).collect();
    for issue in &global {
        let at = config.locate(issue.keyword);
        let message = if at.is_none() {
            format!(
                "{} (sshd's default: not set in its configuration files)",
                issue.message
            )
        } else {
            issue.message.clone()
        };
        out.push(Finding::new(issue.severity, issue.kind, message, at).service(&stack.name));
    }
    for (b, block) in config.blocks.iter().enumerate() {
        let mut changed = values.clone();
        let mut set_here: BTreeMap<&'static str, Loc> = BTreeMap::new();
        for line in config.lines.iter().filter(|l| l.block == Some(b)) {
            let Some(&canonical) = aliases(&line.keyword).first() else {
                continue;
            };
            if set_here.contains_key(canonical) {
                continue;
            }
            set_here.insert(canonical, line.at.clone());
            changed.insert(
                canonical.to_owned(),
                line.args.join(" ").to_ascii_lowercase(),
            );
        }
        if set_here.is_empty() {
            continue;
        }
        for issue in sshd_rules(&changed, stack.password_first) {
            if global_keys.contains(&(issue.kind, issue.message.clone())) {
                continue;
            }
            let at = set_here
                .get(issue.keyword)
                .cloned()
                .unwrap_or_else(|| block.at.clone());
            out.push(
                Finding::new(
                    issue.severity,
                    issue.kind,
                    format!(
                        "{} — for connections matching `Match {}` ({})",
                        issue.message, block.criteria, block.at
                    ),
                    Some(at),
                )
                .service(&stack.name),
            );
        }
    }
    merge(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::testing::{stack, Mem};

    fn sshd_values(overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
        // Debian 12 with the docs' drop-in: password then code.
        let mut text = String::from(
            "usepam yes\nkbdinteractiveauthentication yes\npasswordauthentication no\npubkeyauthentication yes\nhostbasedauthentication no\ngssapiauthentication no\npermitemptypasswords no\nauthenticationmethods keyboard-interactive\n",
        );
        for (k, v) in overrides {
            text = text
                .lines()
                .filter(|l| !l.starts_with(&format!("{k} ")))
                .map(|l| format!("{l}\n"))
                .collect();
            text.push_str(&format!("{k} {v}\n"));
        }
        parse_sshd_t(&text)
    }

    #[test]
    fn sshd_rules_table() {
        // (name, `sshd -T` values changed, password before the code, expected kinds)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool, &'a [&'a str]);
        let cases: &[Case] = &[
            ("docs: password then code", &[], true, &[]),
            (
                "docs: key then code",
                &[("authenticationmethods", "publickey,keyboard-interactive")],
                false,
                &[],
            ),
            ("UsePAM no", &[("usepam", "no")], true, &["sshd-usepam-no"]),
            (
                "KbdInteractiveAuthentication no",
                &[("kbdinteractiveauthentication", "no")],
                true,
                &["sshd-kbdinteractive-no"],
            ),
            (
                "old name ChallengeResponseAuthentication no",
                &[
                    ("challengeresponseauthentication", "no"),
                    ("kbdinteractiveauthentication", "no"),
                ],
                true,
                &["sshd-kbdinteractive-no"],
            ),
            (
                "AuthenticationMethods publickey",
                &[("authenticationmethods", "publickey")],
                true,
                &["sshd-method-without-pam"],
            ),
            (
                "AuthenticationMethods any with keys on (Debian's default)",
                &[("authenticationmethods", "any")],
                true,
                &["sshd-method-without-pam"],
            ),
            (
                "any with keys off and password off: fine",
                &[
                    ("authenticationmethods", "any"),
                    ("pubkeyauthentication", "no"),
                ],
                true,
                &[],
            ),
            (
                "PasswordAuthentication yes with any",
                &[
                    ("authenticationmethods", "any"),
                    ("pubkeyauthentication", "no"),
                    ("passwordauthentication", "yes"),
                ],
                true,
                &["sshd-password-authentication"],
            ),
            (
                "code-only stack with keyboard-interactive alone",
                &[],
                false,
                &["sshd-code-alone"],
            ),
            (
                "a list that cannot be completed is ignored",
                &[("authenticationmethods", "hostbased keyboard-interactive")],
                true,
                &[],
            ),
            (
                "submethods are stripped",
                &[(
                    "authenticationmethods",
                    "publickey,keyboard-interactive:pam",
                )],
                false,
                &[],
            ),
        ];
        for (name, overrides, password_first, want) in cases {
            let values = sshd_values(overrides);
            let got: Vec<&str> = sshd_rules(&values, *password_first)
                .iter()
                .map(|i| i.kind)
                .collect();
            assert_eq!(&got, want, "case: {name}");
        }
    }

    #[test]
    fn sshd_findings_point_at_the_line_in_force() {
        let mem = Mem(BTreeMap::new())
            .with(
                "/etc/ssh/sshd_config",
                "Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\nMatch User backup\n  AuthenticationMethods publickey\nMatch all\n",
            )
            .with(
                "/etc/ssh/sshd_config.d/10-twostep.conf",
                "# twostep\nUsePAM yes\nChallengeResponseAuthentication=no\nAuthenticationMethods \"keyboard-interactive\"\n",
            )
            .with("/etc/ssh/sshd_config.d/.hidden.conf", "UsePAM no\n")
            .with("/etc/ssh/sshd_config.d/readme", "UsePAM no\n");
        let config = read_sshd_config(&mem, "/etc/ssh/sshd_config");
        let values = sshd_values(&[("kbdinteractiveauthentication", "no")]);
        let found = analyze_sshd(&values, &config, &stack(true));
        let got: Vec<(&str, String)> = found
            .iter()
            .map(|f| {
                (
                    f.kind,
                    f.at.as_ref().map(ToString::to_string).unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "sshd-method-without-pam",
                    "/etc/ssh/sshd_config:5".to_owned()
                ),
                (
                    "sshd-kbdinteractive-no",
                    "/etc/ssh/sshd_config.d/10-twostep.conf:3".to_owned()
                ),
            ]
        );
        assert!(found[0]
            .message
            .contains("`Match User backup` (/etc/ssh/sshd_config:4)"));
        assert_eq!(found[0].services, vec!["sshd"]);
    }

    #[test]
    fn sshd_default_values_say_so() {
        let config = SshdConfig::default();
        let values = sshd_values(&[("authenticationmethods", "any")]);
        let found = analyze_sshd(&values, &config, &stack(true));
        assert_eq!(found.len(), 1);
        assert!(found[0].at.is_none());
        assert!(
            found[0].message.contains("sshd's default"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn sshd_words_and_globs() {
        type Words<'a> = Option<(&'a str, &'a [&'a str])>;
        let cases: &[(&str, Words)] = &[
            ("  # comment", None),
            ("", None),
            ("UsePAM yes", Some(("usepam", &["yes"]))),
            ("UsePAM=yes", Some(("usepam", &["yes"]))),
            ("UsePAM = yes # why", Some(("usepam", &["yes"]))),
            (
                "AuthorizedKeysFile \"/a b/%u\" .ssh/x",
                Some(("authorizedkeysfile", &["/a b/%u", ".ssh/x"])),
            ),
        ];
        for (line, want) in cases {
            let got = sshd_words(line);
            let want = want.map(|(k, a)| {
                (
                    k.to_owned(),
                    a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
                )
            });
            assert_eq!(got, want, "{line:?}");
        }
        assert!(wildmatch(b"*.conf", b"10-a.conf"));
        assert!(!wildmatch(b"*.conf", b"10-a.conf.bak"));
        assert!(wildmatch(b"a?c", b"abc"));
    }

    #[test]
    fn sshd_t_output_parses() {
        let v = parse_sshd_t("port 22\nusepam yes\nchallengeresponseauthentication no\nauthenticationmethods publickey,password keyboard-interactive\nhostkey /a\nhostkey /b\n");
        assert_eq!(v["usepam"], "yes");
        assert_eq!(v["kbdinteractiveauthentication"], "no");
        assert_eq!(v["hostkey"], "/a");
        let lists = SshdValues(&v).method_lists().unwrap();
        assert_eq!(
            lists,
            vec![vec!["publickey", "password"], vec!["keyboard-interactive"]]
        );
    }
}
