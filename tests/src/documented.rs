// SPDX-License-Identifier: MIT OR Apache-2.0
//! The PAM stacks and sudoers drop-ins the documentation shows, read from the documents
//! themselves (README.md, docs/*.md, packaging/README.md, the man pages), so that what a
//! test runs is exactly what an admin copies (issue 19, fault 10).
//!
//! A *stack* is a fenced code block (Markdown ```` ``` ````, roff `.nf` … `.fi`) with a line
//! `auth CONTROL …pam_twostep.so …`. [`DocStack::render`] turns it into a dedicated service
//! file: the module name becomes the built module (absolute path) on the test's bus,
//! placeholders (`<…>`, `[a|b]`) and `...` lines go, and `pam_rootok` goes (the tests run
//! libpam as root, where it would succeed for everyone; docs/su-login.md explains why it
//! stays first in `su`). `@include common-auth` stays: the machine's Debian file, read only.

use std::path::{Path, PathBuf};

use crate::artifacts;

/// A code block of a document, with where it starts.
#[derive(Clone, Debug)]
pub struct Block {
    /// `path:line` of the block's first line, relative to the repository.
    pub source: String,
    /// The lines inside the fences, trimmed of surrounding white space.
    pub lines: Vec<String>,
    /// The paragraph right before the block (e.g. "`/etc/pam.d/sudo-i`").
    pub caption: String,
}

impl Block {
    /// Whether any line contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.lines.iter().any(|l| l.contains(needle))
    }

    /// The block as it stands in the document.
    pub fn text(&self) -> String {
        let mut s = self.lines.join("\n");
        s.push('\n');
        s
    }
}

/// A documented PAM stack that names pam_twostep.
#[derive(Clone, Debug)]
pub struct DocStack {
    pub block: Block,
}

/// The documents that show stacks or drop-ins, relative to the repository root.
pub fn documents() -> Vec<PathBuf> {
    let root = artifacts::repo_root();
    let mut docs = vec![
        PathBuf::from("README.md"),
        PathBuf::from("packaging/README.md"),
    ];
    for dir in ["docs", "packaging/man"] {
        let mut names: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("read {dir}: {e}"))
            .flatten()
            .map(|e| Path::new(dir).join(e.file_name()))
            .filter(|p| {
                let name = p.to_string_lossy();
                name.ends_with(".md")
                    || name.ends_with(".1")
                    || name.ends_with(".5.in")
                    || name.ends_with(".8")
            })
            .collect();
        names.sort();
        docs.extend(names);
    }
    docs
}

/// The code blocks of one document (`rel` relative to the repository root).
pub fn blocks(rel: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(artifacts::repo_root().join(rel))
        .unwrap_or_else(|e| panic!("read {}: {e}", rel.display()));
    let roff = !rel.to_string_lossy().ends_with(".md");
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    let mut caption = String::new();
    let mut paragraph = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if current.is_none() && !line.starts_with("```") && line != ".nf" {
            if line.is_empty() {
                if !paragraph.is_empty() {
                    caption = std::mem::take(&mut paragraph);
                }
            } else {
                paragraph.push_str(line);
                paragraph.push('\n');
            }
        }
        let (open, close) = if roff {
            (line == ".nf", line == ".fi")
        } else {
            let fence = line.starts_with("```");
            (fence, fence)
        };
        match current.take() {
            None if open => {
                current = Some(Block {
                    source: format!("{}:{}", rel.display(), i + 2),
                    lines: Vec::new(),
                    caption: if paragraph.is_empty() {
                        std::mem::take(&mut caption)
                    } else {
                        caption.clear();
                        std::mem::take(&mut paragraph)
                    },
                });
            }
            None => {}
            Some(b) if close => out.push(b),
            Some(mut b) => {
                let line = if roff {
                    line.replace("\\-", "-").replace("\\e", "\\")
                } else {
                    line.to_string()
                };
                b.lines.push(line);
                current = Some(b);
            }
        }
    }
    out
}

/// Whether `word` names our module (packaged name, built name, or a path to either).
fn is_module(word: &str) -> bool {
    word.ends_with("/pam_twostep.so")
        || word.ends_with("/libpam_twostep.so")
        || word == "pam_twostep.so"
        || word == "libpam_twostep.so"
}

/// The words of an uncommented PAM line (a bracketed control is one word).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').map_or(after.len(), |e| e + 1);
            out.push(format!("[{}", &after[..end]));
            rest = after[end..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    out
}

/// Whether the line is an `auth` line that runs our module.
fn is_module_line(line: &str) -> bool {
    let w = words(line);
    w.first()
        .is_some_and(|t| t.trim_start_matches('-') == "auth")
        && w.get(2).is_some_and(|m| is_module(m))
}

/// Every documented stack: the paragraphs (blocks split at blank lines) of the code blocks
/// of [`documents`] with an `auth … pam_twostep.so` line.
pub fn pam_stacks() -> Vec<DocStack> {
    documents()
        .iter()
        .flat_map(|d| blocks(d))
        .flat_map(|b| paragraphs(&b))
        .filter(|b| b.lines.iter().any(|l| is_module_line(l)))
        .map(|block| DocStack { block })
        .collect()
}

/// A block split at its blank lines ("# password, then code … (blank) # key, then code …").
fn paragraphs(b: &Block) -> Vec<Block> {
    let (file, start) = b.source.rsplit_once(':').unwrap_or((&b.source, "1"));
    let start: usize = start.parse().unwrap_or(1);
    let mut out: Vec<Block> = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in b.lines.iter().enumerate() {
        if line.is_empty() {
            out.extend(current.take());
            continue;
        }
        current
            .get_or_insert_with(|| Block {
                source: format!("{file}:{}", start + i),
                lines: Vec::new(),
                caption: b.caption.clone(),
            })
            .lines
            .push(line.clone());
    }
    out.extend(current);
    out
}

/// The code block of document `rel` whose caption contains `caption`; panics naming the
/// document when there is none.
pub fn block(rel: &str, caption: &str) -> Block {
    blocks(Path::new(rel))
        .into_iter()
        .find(|b| b.caption.contains(caption))
        .unwrap_or_else(|| panic!("{rel} has no code block after a line with {caption}"))
}

/// Password modules a documented stack may use before the code.
const PASSWORD_MODULES: [&str; 2] = ["pam_unix.so", "pam_sss.so"];

impl DocStack {
    /// Whether the stack checks a password before the code (`@include common-auth` or a
    /// password module before the module line); a stack without one is the key-then-code
    /// stack of docs/sshd.md, where sshd checked the key.
    pub fn password_first(&self) -> bool {
        for line in &self.block.lines {
            if is_module_line(line) {
                return false;
            }
            let w = words(line);
            let first = w.first().map(String::as_str);
            if matches!(first, Some("@include")) && w.get(1).is_some_and(|t| t == "common-auth") {
                return true;
            }
            if first.is_some_and(|t| t.trim_start_matches('-') == "auth")
                && w.iter().any(|x| PASSWORD_MODULES.contains(&x.as_str()))
            {
                return true;
            }
        }
        false
    }

    /// The stack as a service file for the tests: the built module on `bus_address`.
    pub fn render(&self, bus_address: &str) -> String {
        let mut out = format!(
            "# twostep e2e: the stack documented at {}\n",
            self.block.source
        );
        for line in &self.block.lines {
            if line.is_empty() || line.starts_with('#') || line == "..." {
                continue;
            }
            if line.contains("pam_rootok.so") {
                continue;
            }
            if !is_module_line(line) {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            let w = words(line);
            let mut rendered: Vec<String> = w[..2].to_vec();
            rendered.push(artifacts::pam_module().display().to_string());
            rendered.extend(
                w[3..]
                    .iter()
                    .filter(|a| !a.starts_with("bus="))
                    .filter(|a| !a.contains(['<', '>', '[', ']', '|']))
                    .cloned(),
            );
            rendered.push(format!("bus={bus_address}"));
            out.push_str(&rendered.join(" "));
            out.push('\n');
        }
        out
    }
}

/// The sudoers drop-in blocks: code blocks with a `pam_service=` line.
pub fn sudoers_drop_ins() -> Vec<Block> {
    documents()
        .iter()
        .flat_map(|d| blocks(d))
        .filter(|b| {
            b.lines
                .iter()
                .any(|l| l.starts_with("Defaults") && l.contains("pam_service="))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_brackets_together() {
        assert_eq!(
            words("auth [success=1 default=ignore] pam_unix.so nullok"),
            vec![
                "auth",
                "[success=1 default=ignore]",
                "pam_unix.so",
                "nullok"
            ]
        );
    }

    #[test]
    fn a_stack_renders_with_the_built_module() {
        let s = DocStack {
            block: Block {
                source: "x.md:1".into(),
                caption: String::new(),
                lines: vec![
                    "auth sufficient pam_rootok.so".into(),
                    "...".into(),
                    "@include common-auth".into(),
                    "auth required /p/libpam_twostep.so bus=unix:path=<private bus> [timeout=2|failmode=open] nullok".into(),
                ],
            },
        };
        assert!(s.password_first());
        let text = s.render("unix:path=/b");
        assert!(!text.contains("rootok"), "{text}");
        assert!(text.contains("@include common-auth\n"), "{text}");
        assert!(
            text.ends_with(&format!(
                "auth required {} nullok bus=unix:path=/b\n",
                artifacts::pam_module().display()
            )),
            "{text}"
        );
    }
}
