// SPDX-License-Identifier: MIT OR Apache-2.0
//! Reading QR codes back, with `zbarimg` (Debian's zbar-tools), a decoder we did not write.
//!
//! A terminal QR code (Unicode half blocks) is turned into a picture first: each character
//! cell is one module wide and two modules tall; a block character's ink is a *light*
//! module (the daemon draws light modules in the terminal's foreground colour, so the code
//! reads on dark and light terminals), a space is a dark module.

use std::path::Path;
use std::time::Duration;

use crate::proc;

/// Pixels per module in the pictures made from terminal text.
pub const SCALE: usize = 6;

/// `(top, bottom)` of one character cell; `true` = light. `None` for any other character.
fn cell(c: char) -> Option<(bool, bool)> {
    match c {
        '█' => Some((true, true)),
        '▀' => Some((true, false)),
        '▄' => Some((false, true)),
        ' ' => Some((false, false)),
        _ => None,
    }
}

/// Whether `line` is made only of the four characters a half-block QR code uses, and at
/// least one block.
pub fn is_qr_line(line: &str) -> bool {
    !line.is_empty() && line.chars().all(|c| cell(c).is_some()) && line.contains(['█', '▀', '▄'])
}

/// The first run of consecutive QR lines in `text` (at least 10 lines), or `None`.
pub fn find_terminal_qr(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        if is_qr_line(lines[i]) {
            let start = i;
            while i < lines.len() && is_qr_line(lines[i]) {
                i += 1;
            }
            if i - start >= 10 {
                return Some(lines[start..i].join("\n"));
            }
        } else {
            i += 1;
        }
    }
    None
}

/// The modules of a terminal QR code, row by row (`true` = light).
///
/// # Errors
/// A character other than the four half-block characters, or lines of unequal width.
pub fn modules(text: &str) -> Result<Vec<Vec<bool>>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let width = lines.first().map_or(0, |l| l.chars().count());
    let mut rows = Vec::with_capacity(lines.len() * 2);
    for (n, line) in lines.iter().enumerate() {
        if line.chars().count() != width {
            return Err(format!(
                "line {n} of the QR code is {} characters wide, the first one {width}",
                line.chars().count()
            ));
        }
        let cells: Vec<(bool, bool)> = line
            .chars()
            .map(|c| cell(c).ok_or_else(|| format!("unexpected character {c:?} in line {n}")))
            .collect::<Result<_, _>>()?;
        rows.push(cells.iter().map(|c| c.0).collect());
        rows.push(cells.iter().map(|c| c.1).collect());
    }
    Ok(rows)
}

/// A binary PGM (P5) picture of `modules`, `SCALE` pixels per module, light = white.
pub fn pgm(modules: &[Vec<bool>]) -> Vec<u8> {
    let h = modules.len() * SCALE;
    let w = modules.first().map_or(0, Vec::len) * SCALE;
    let mut out = format!("P5\n{w} {h}\n255\n").into_bytes();
    for row in modules {
        let line: Vec<u8> = row
            .iter()
            .flat_map(|light| std::iter::repeat_n(if *light { 255 } else { 0 }, SCALE))
            .collect();
        for _ in 0..SCALE {
            out.extend_from_slice(&line);
        }
    }
    out
}

/// Decode the QR code(s) in the picture at `path` with `zbarimg --raw`; one string per
/// symbol found.
///
/// # Errors
/// zbarimg's output when it finds no symbol or fails.
pub fn zbarimg(path: &Path) -> Result<Vec<String>, String> {
    let mut cmd = proc::command(None, "zbarimg");
    cmd.args(["--raw", "-q", "-Sdisable", "-Sqrcode.enable"])
        .arg(path);
    let out = proc::run(cmd, b"", Duration::from_secs(20));
    if !out.success() {
        return Err(format!("zbarimg found no QR code:\n{out}"));
    }
    Ok(out
        .stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Draw a terminal QR code into a PGM in `dir` and decode it with zbarimg.
///
/// # Errors
/// The text is not a half-block QR code, or zbarimg cannot read it.
pub fn decode_terminal(text: &str, dir: &Path) -> Result<Vec<String>, String> {
    let m = modules(text)?;
    let path = dir.join(format!("terminal-{}.pgm", crate::unique::token()));
    std::fs::write(&path, pgm(&m)).map_err(|e| format!("write {}: {e}", path.display()))?;
    zbarimg(&path)
}
