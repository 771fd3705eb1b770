//! PNG encoding of rendered images.

use super::tracer::Image;

/// Why an image could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The pixel buffer does not match the dimensions.
    #[error("image data: expected {expected} bytes for {width}x{height} rgb, found {found}")]
    Size {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// `width * height * 3`.
        expected: u64,
        /// The buffer's length.
        found: usize,
    },
    /// The encoder refused the image.
    #[error("png encoding failed: {0}")]
    Png(#[from] png::EncodingError),
}

/// Encodes an image as an 8-bit RGB PNG.
pub fn encode_png(img: &Image) -> Result<Vec<u8>, EncodeError> {
    let expected = u64::from(img.width) * u64::from(img.height) * 3;
    if img.rgb.len() as u64 != expected || expected == 0 {
        return Err(EncodeError::Size { width: img.width, height: img.height, expected, found: img.rgb.len() });
    }
    let mut out = Vec::with_capacity(img.rgb.len() / 2);
    let mut encoder = png::Encoder::new(&mut out, img.width, img.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&img.rgb)?;
    writer.finish()?;
    Ok(out)
}
