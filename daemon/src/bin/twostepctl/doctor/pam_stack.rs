// SPDX-License-Identifier: MIT OR Apache-2.0
//! The PAM stack model: lines as libpam parses them ([`parse_pam_line`]), controls as it
//! resolves them ([`Control`], [`Action`]), and the `auth` stack of a service as libpam
//! builds it ([`Loader`]: `@include`, `include` and `substack` followed, a line it cannot
//! use kept as an entry that always fails).

use super::findings::Loc;
use super::io::{basename, join, Files};

/// libpam's `PAM_SUBSTACK_MAX_LEVEL`: deeper includes make the stack fail.
const MAX_INCLUDE_DEPTH: usize = 16;
/// The file names of our module: the packaged name and the name cargo builds.
const MODULE_NAMES: [&str; 2] = ["pam_twostep.so", "libpam_twostep.so"];
/// The values a bracketed PAM control may name (`_pam_token_returns` in libpam).
const PAM_VALUES: [&str; 33] = [
    "success",
    "open_err",
    "symbol_err",
    "service_err",
    "system_err",
    "buf_err",
    "perm_denied",
    "auth_err",
    "cred_insufficient",
    "authinfo_unavail",
    "user_unknown",
    "maxtries",
    "new_authtok_reqd",
    "acct_expired",
    "session_err",
    "cred_unavail",
    "cred_expired",
    "cred_err",
    "no_module_data",
    "conv_err",
    "authtok_err",
    "authtok_recover_err",
    "authtok_lock_busy",
    "authtok_disable_aging",
    "try_again",
    "ignore",
    "abort",
    "authtok_expired",
    "module_unknown",
    "bad_item",
    "conv_again",
    "incomplete",
    "default",
];

/// What libpam does with one module's return value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Action {
    Ignore,
    Ok,
    Done,
    Bad,
    Die,
    Reset,
    /// Skip this many entries of the same level.
    Jump(usize),
}

/// A control: `required`…, or `[value=action …]`, as libpam resolves it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) struct Control {
    /// As written.
    pub(super) text: String,
    pub(super) explicit: Vec<(String, Action)>,
    /// For the values not named (libpam: `bad` when `default=` is not given).
    pub(super) default: Action,
}

impl Control {
    /// The four keywords, with libpam's meaning.
    fn keyword(word: &str) -> Option<Control> {
        use Action::{Bad, Die, Done, Ignore, Ok};
        let (explicit, default): (&[(&str, Action)], Action) =
            match word.to_ascii_lowercase().as_str() {
                "required" => (
                    &[
                        ("success", Ok),
                        ("new_authtok_reqd", Ok),
                        ("ignore", Ignore),
                    ],
                    Bad,
                ),
                "requisite" => (
                    &[
                        ("success", Ok),
                        ("new_authtok_reqd", Ok),
                        ("ignore", Ignore),
                    ],
                    Die,
                ),
                "optional" => (&[("success", Ok), ("new_authtok_reqd", Ok)], Ignore),
                "sufficient" => (&[("success", Done), ("new_authtok_reqd", Done)], Ignore),
                _ => return None,
            };
        Some(Control {
            text: word.to_owned(),
            explicit: explicit
                .iter()
                .map(|(v, a)| ((*v).to_owned(), *a))
                .collect(),
            default,
        })
    }

    /// `value=action …` (the text between the brackets).
    fn bracket(inner: &str) -> Result<Control, String> {
        let mut explicit = Vec::new();
        let mut default = Action::Bad;
        for pair in inner.split_whitespace() {
            let (value, action) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not value=action"))?;
            let value = value.to_ascii_lowercase();
            if !PAM_VALUES.contains(&value.as_str()) {
                return Err(format!("unknown return value `{value}`"));
            }
            let action = match action.to_ascii_lowercase().as_str() {
                "ignore" => Action::Ignore,
                "ok" => Action::Ok,
                "done" => Action::Done,
                "bad" => Action::Bad,
                "die" => Action::Die,
                "reset" => Action::Reset,
                n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    match n.parse::<usize>() {
                        // libpam: a jump of 0 is treated as ignore.
                        Ok(0) => Action::Ignore,
                        Ok(n) => Action::Jump(n),
                        Err(_) => return Err(format!("jump `{action}` out of range")),
                    }
                }
                _ => return Err(format!("unknown action `{action}`")),
            };
            if value == "default" {
                default = action;
            } else {
                explicit.push((value, action));
            }
        }
        Ok(Control {
            text: format!(
                "[{}]",
                inner.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
            explicit,
            default,
        })
    }

    pub(super) fn action(&self, value: &str) -> Action {
        self.explicit
            .iter()
            .find(|(v, _)| v == value)
            .map_or(self.default, |(_, a)| *a)
    }
}

/// One logical line of a PAM file.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) enum PamLine {
    /// `@include FILE`: all lines of FILE, of every type.
    IncludeAll(String),
    /// `TYPE include FILE`.
    Include { ty: String, target: String },
    /// `TYPE substack FILE`.
    Substack { ty: String, target: String },
    Module {
        ty: String,
        /// `-TYPE`: libpam skips the line silently when the module cannot be loaded.
        dash: bool,
        control: Control,
        module: String,
        args: Vec<String>,
    },
    /// libpam cannot use this line and installs an entry that always fails, of type `ty`
    /// (`auth` when the type itself is wrong).
    Broken { ty: String, why: String },
}

/// The logical lines of a PAM file with the number of their first physical line: `#`
/// ends a line, a backslash at its end (with no comment) joins the next one.
pub(super) fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut acc = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if acc.is_empty() {
            start = i + 1;
        }
        let (code, comment) = match raw.split_once('#') {
            Some((code, _)) => (code, true),
            None => (raw, false),
        };
        let trimmed = code.trim_end_matches([' ', '\t']);
        if let Some(joined) = trimmed.strip_suffix('\\').filter(|_| !comment) {
            acc.push_str(joined);
            acc.push(' ');
            continue;
        }
        acc.push_str(code);
        if acc.trim().is_empty() {
            acc.clear();
        } else {
            out.push((start, std::mem::take(&mut acc)));
        }
    }
    if !acc.trim().is_empty() {
        out.push((start, acc));
    }
    out
}

/// Words of a PAM line; `[ … ]` is one word (brackets kept; `\]` inside is `]`).
pub(super) fn pam_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut word = String::new();
        if first == '[' {
            chars.next();
            word.push('[');
            loop {
                match chars.next() {
                    None => return Err("a `[` without its `]`".into()),
                    Some('\\') if chars.peek() == Some(&']') => {
                        chars.next();
                        word.push(']');
                    }
                    Some(']') => break,
                    Some(c) => word.push(c),
                }
            }
            word.push(']');
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

pub(super) fn parse_pam_line(line: &str) -> PamLine {
    let words = match pam_words(line) {
        Ok(w) => w,
        Err(why) => {
            return PamLine::Broken {
                ty: "auth".into(),
                why,
            }
        }
    };
    let Some(first) = words.first() else {
        return PamLine::Broken {
            ty: "auth".into(),
            why: "empty line".into(),
        };
    };
    if first.starts_with('@') {
        return match (first.as_str(), words.get(1)) {
            ("@include", Some(target)) => PamLine::IncludeAll(target.clone()),
            _ => PamLine::Broken {
                ty: "auth".into(),
                why: format!("`{first}` is not a PAM directive"),
            },
        };
    }
    let dash = first.starts_with('-');
    let ty = first.trim_start_matches('-').to_ascii_lowercase();
    if !["auth", "account", "password", "session"].contains(&ty.as_str()) {
        return PamLine::Broken {
            ty: "auth".into(),
            why: format!("`{first}` is not a module type"),
        };
    }
    let Some(control) = words.get(1) else {
        return PamLine::Broken {
            ty,
            why: "no control".into(),
        };
    };
    let target = words.get(2).cloned();
    match control.to_ascii_lowercase().as_str() {
        "include" | "substack" => {
            let Some(target) = target else {
                return PamLine::Broken {
                    ty,
                    why: format!("`{control}` without a file"),
                };
            };
            if control.eq_ignore_ascii_case("include") {
                PamLine::Include { ty, target }
            } else {
                PamLine::Substack { ty, target }
            }
        }
        _ => {
            let Some(module) = target else {
                return PamLine::Broken {
                    ty,
                    why: "no module".into(),
                };
            };
            let control =
                if let Some(inner) = control.strip_prefix('[').and_then(|c| c.strip_suffix(']')) {
                    match Control::bracket(inner) {
                        Ok(c) => c,
                        Err(why) => {
                            return PamLine::Broken {
                                ty,
                                why: format!("control {control}: {why}"),
                            }
                        }
                    }
                } else {
                    match Control::keyword(control) {
                        Some(c) => c,
                        None => {
                            return PamLine::Broken {
                                ty,
                                why: format!("unknown control `{control}`"),
                            }
                        }
                    }
                };
            let args = words
                .iter()
                .skip(3)
                .map(|a| {
                    a.strip_prefix('[')
                        .and_then(|a| a.strip_suffix(']'))
                        .unwrap_or(a)
                        .to_owned()
                })
                .collect();
            PamLine::Module {
                ty,
                dash,
                control,
                module,
                args,
            }
        }
    }
}

pub(super) fn parse_pam(text: &str) -> Vec<(usize, PamLine)> {
    logical_lines(text)
        .into_iter()
        .map(|(n, line)| (n, parse_pam_line(&line)))
        .collect()
}

/// One entry of a flattened `auth` stack, as libpam's handler list holds it.
#[derive(Clone, Debug)]
pub(super) struct Handler {
    /// Substack depth (0: the service's own level).
    pub(super) level: usize,
    pub(super) at: Loc,
    /// The include lines that led here, outermost first.
    pub(super) via: Vec<String>,
    pub(super) kind: HandlerKind,
}

#[derive(Clone, Debug)]
pub(super) enum HandlerKind {
    Module {
        dash: bool,
        control: Control,
        module: String,
        args: Vec<String>,
    },
    /// The marker of a substack; its entries follow at `level + 1`.
    Substack,
    /// libpam installs an entry that always fails.
    Broken(String),
}

impl Handler {
    pub(super) fn module(&self) -> Option<(&Control, &str)> {
        match &self.kind {
            HandlerKind::Module {
                control, module, ..
            } => Some((control, basename(module))),
            _ => None,
        }
    }

    pub(super) fn is_twostep(&self) -> bool {
        self.module()
            .is_some_and(|(_, m)| MODULE_NAMES.contains(&m))
    }

    /// The line as an admin would write it, for messages.
    pub(super) fn text(&self) -> String {
        match &self.kind {
            HandlerKind::Module {
                dash,
                control,
                module,
                args,
            } => {
                let mut s = format!(
                    "{}auth {} {}",
                    if *dash { "-" } else { "" },
                    control.text,
                    module
                );
                for a in args {
                    s.push(' ');
                    s.push_str(a);
                }
                s
            }
            HandlerKind::Substack => "auth substack".into(),
            HandlerKind::Broken(why) => why.clone(),
        }
    }
}

/// Builds the `auth` stack of a service by reading and following its files.
pub(super) struct Loader<'a> {
    pub(super) files: &'a dyn Files,
    pub(super) dir: &'a str,
}

/// Where an entry comes from: its line, the include lines that led there, its substack
/// level and include depth.
struct Site<'s> {
    at: &'s Loc,
    via: &'s [String],
    level: usize,
    depth: usize,
}

impl Site<'_> {
    fn handler(&self, kind: HandlerKind) -> Handler {
        Handler {
            level: self.level,
            at: self.at.clone(),
            via: self.via.to_vec(),
            kind,
        }
    }
}

impl Loader<'_> {
    /// The `auth` entries of config `name` appended to `out`.
    ///
    /// # Errors
    /// Why `name` cannot be read (libpam then fails the line that included it).
    fn load(
        &self,
        name: &str,
        level: usize,
        depth: usize,
        via: &[String],
        out: &mut Vec<Handler>,
    ) -> Result<(), String> {
        let path = join(self.dir, name);
        let text = self
            .files
            .read(&path)
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        for (line, entry) in parse_pam(&text) {
            let at = Loc {
                file: path.clone(),
                line,
            };
            let site = Site {
                at: &at,
                via,
                level,
                depth,
            };
            match entry {
                PamLine::IncludeAll(target) => self.include(&site, "@include", &target, out),
                PamLine::Include { ty, target } if ty == "auth" => {
                    self.include(&site, "include", &target, out);
                }
                PamLine::Substack { ty, target } if ty == "auth" => {
                    out.push(site.handler(HandlerKind::Substack));
                    self.include(&site, "substack", &target, out);
                }
                PamLine::Module {
                    ty,
                    dash,
                    control,
                    module,
                    args,
                } if ty == "auth" => out.push(site.handler(HandlerKind::Module {
                    dash,
                    control,
                    module,
                    args,
                })),
                PamLine::Broken { ty, why } if ty == "auth" => {
                    out.push(site.handler(HandlerKind::Broken(why)));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `@include`, `include` or `substack` of `target` at `site`; a file that cannot be
    /// read, or nesting too deep, becomes an entry that always fails (as in libpam).
    fn include(&self, site: &Site<'_>, what: &str, target: &str, out: &mut Vec<Handler>) {
        if site.depth + 1 >= MAX_INCLUDE_DEPTH {
            out.push(site.handler(HandlerKind::Broken(format!(
                "{what} {target}: includes nested deeper than {MAX_INCLUDE_DEPTH}"
            ))));
            return;
        }
        let mut via = site.via.to_vec();
        via.push(format!("{} ({what} {target})", site.at));
        let level = site.level + usize::from(what == "substack");
        if let Err(why) = self.load(target, level, site.depth + 1, &via, out) {
            out.push(site.handler(HandlerKind::Broken(format!("{what} {target}: {why}"))));
        }
    }

    /// The `auth` stack libpam runs for `service`, and the file it came from: the
    /// service's own file, or `other` when it has none or it holds no `auth` line.
    pub(super) fn service(&self, service: &str) -> (Vec<Handler>, String) {
        let mut stack = Vec::new();
        if self.load(service, 0, 0, &[], &mut stack).is_ok() && !stack.is_empty() {
            return (stack, join(self.dir, service));
        }
        let mut other = Vec::new();
        let _ = self.load("other", 0, 0, &[], &mut other);
        (other, join(self.dir, "other"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pam_lines_parse_like_libpam() {
        let text = "#%PAM-1.0\n\
                    auth  [success=done default=ignore]  pam_faillock.so authsucc\n\
                    -auth sufficient pam_x.so a [b c\\]d] # comment\n\
                    @include common-auth\n\
                    auth include system-auth\n\
                    AUTH substack sub\n\
                    auth required \\\n   pam_twostep.so nullok\n\
                    auth requried pam_y.so\n\
                    bogus required pam_z.so\n\
                    account required\n";
        let lines = parse_pam(text);
        let shapes: Vec<(usize, String)> = lines
            .iter()
            .map(|(n, l)| {
                let s = match l {
                    PamLine::IncludeAll(t) => format!("@include {t}"),
                    PamLine::Include { ty, target } => format!("{ty} include {target}"),
                    PamLine::Substack { ty, target } => format!("{ty} substack {target}"),
                    PamLine::Module {
                        ty,
                        dash,
                        control,
                        module,
                        args,
                    } => format!(
                        "{}{ty} {} {module} {:?}",
                        if *dash { "-" } else { "" },
                        control.text,
                        args
                    ),
                    PamLine::Broken { ty, why } => format!("broken {ty}: {why}"),
                };
                (*n, s)
            })
            .collect();
        let want: Vec<(usize, String)> = vec![
            (
                2,
                "auth [success=done default=ignore] pam_faillock.so [\"authsucc\"]".into(),
            ),
            (3, "-auth sufficient pam_x.so [\"a\", \"b c]d\"]".into()),
            (4, "@include common-auth".into()),
            (5, "auth include system-auth".into()),
            (6, "auth substack sub".into()),
            (7, "auth required pam_twostep.so [\"nullok\"]".into()),
            (9, "broken auth: unknown control `requried`".into()),
            (10, "broken auth: `bogus` is not a module type".into()),
            (11, "broken account: no module".into()),
        ];
        assert_eq!(shapes, want);
    }

    #[test]
    fn controls_resolve_like_libpam() {
        use Action::*;
        let cases: &[(&str, &[(&str, Action)])] = &[
            (
                "required",
                &[("success", Ok), ("ignore", Ignore), ("auth_err", Bad)],
            ),
            (
                "requisite",
                &[("success", Ok), ("ignore", Ignore), ("auth_err", Die)],
            ),
            (
                "optional",
                &[("success", Ok), ("ignore", Ignore), ("auth_err", Ignore)],
            ),
            (
                "sufficient",
                &[("success", Done), ("ignore", Ignore), ("auth_err", Ignore)],
            ),
            (
                "[success=1 default=ignore]",
                &[("success", Jump(1)), ("auth_err", Ignore)],
            ),
            (
                "[success=done default=ignore]",
                &[("success", Done), ("maxtries", Ignore)],
            ),
            ("[default=done]", &[("success", Done), ("ignore", Done)]),
            (
                "[success=ok]",
                &[("success", Ok), ("auth_err", Bad), ("ignore", Bad)],
            ),
            (
                "[success=0 default=die]",
                &[("success", Ignore), ("auth_err", Die)],
            ),
            (
                "[success=ok authinfo_unavail=ignore default=bad]",
                &[("authinfo_unavail", Ignore), ("auth_err", Bad)],
            ),
        ];
        for (text, expect) in cases {
            let control = match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                Some(inner) => Control::bracket(inner).unwrap(),
                None => Control::keyword(text).unwrap(),
            };
            for (value, action) in *expect {
                assert_eq!(control.action(value), *action, "{text} {value}");
            }
        }
        assert!(Control::bracket("success=maybe").is_err());
        assert!(Control::bracket("sucess=ok").is_err());
        assert!(Control::bracket("success=+1").is_err());
    }
}
