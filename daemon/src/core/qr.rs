// SPDX-License-Identifier: MIT OR Apache-2.0
//! QR codes of `otpauth://` URIs for terminals (Unicode half blocks) and files (PNG, SVG).

use qrcode::render::{svg, unicode};
use qrcode::{EcLevel, QrCode};

fn code(uri: &str) -> Result<QrCode, String> {
    QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::M)
        .map_err(|e| format!("cannot draw a QR code: {e}"))
}

/// The QR code in Unicode half blocks, two modules per character cell, with a four-module
/// quiet zone. Dark modules are drawn as spaces on a light background... inverted so it
/// reads on dark and light terminals alike: the light parts (quiet zone included) are the
/// block characters, which every terminal draws in its foreground colour, and phones
/// decode inverted codes fine either way.
///
/// # Errors
/// The URI does not fit in a QR code.
pub fn terminal(uri: &str) -> Result<String, String> {
    Ok(code(uri)?
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// [`terminal`] with its colours pinned (bright white on black, ANSI SGR) line by line, so
/// it reads the same on dark and light terminal themes. For terminals only: the login
/// conversation gets the plain form, since not every PAM client is a terminal.
///
/// # Errors
/// The URI does not fit in a QR code.
pub fn terminal_pinned(uri: &str) -> Result<String, String> {
    Ok(terminal(uri)?
        .lines()
        .map(|l| format!("\x1b[97;40m{l}\x1b[0m"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// An SVG image (black on white, quiet zone included).
///
/// # Errors
/// The URI does not fit in a QR code.
pub fn svg(uri: &str) -> Result<String, String> {
    Ok(code(uri)?
        .render::<svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

/// A PNG image, 8 pixels per module, black on white with a four-module quiet zone.
///
/// # Errors
/// The URI does not fit in a QR code, or PNG encoding failed.
pub fn png(uri: &str) -> Result<Vec<u8>, String> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let qr = code(uri)?;
    let width = qr.width();
    let colors = qr.to_colors();
    let side = (width + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (i % width + QUIET, i / width + QUIET);
        for y in my * SCALE..(my + 1) * SCALE {
            if let Some(row) = pixels.get_mut(y * side + mx * SCALE..y * side + (mx + 1) * SCALE) {
                row.fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let side32 = u32::try_from(side).map_err(|_| "QR code too large".to_owned())?;
    let mut enc = png::Encoder::new(&mut out, side32, side32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .and_then(|mut w| w.write_image_data(&pixels))
        .map_err(|e| format!("cannot write PNG: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_form() {
        let uri = "otpauth://totp/host:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=host";
        let t = terminal(uri).unwrap();
        assert!(t.lines().count() > 10);
        // Quiet zone: the first line is all one colour.
        let first = t.lines().next().unwrap();
        assert!(first.chars().all(|c| c == first.chars().next().unwrap()));
        assert!(svg(uri).unwrap().starts_with("<?xml"));
        assert!(png(uri).unwrap().starts_with(b"\x89PNG"));
    }
}
