//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::io::Cursor;

/// A decoded 8-bit RGB PNG: (width, height, rgb bytes).
pub fn decode_png(bytes: &[u8]) -> anyhow::Result<(u32, u32, Vec<u8>)> {
    let mut reader = png::Decoder::new(Cursor::new(bytes)).read_info()?;
    let size = reader.output_buffer_size().ok_or_else(|| anyhow::anyhow!("png too large"))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf)?;
    anyhow::ensure!(info.color_type == png::ColorType::Rgb, "expected rgb, found {:?}", info.color_type);
    anyhow::ensure!(info.bit_depth == png::BitDepth::Eight, "expected 8 bits, found {:?}", info.bit_depth);
    buf.truncate(info.buffer_size());
    Ok((info.width, info.height, buf))
}
