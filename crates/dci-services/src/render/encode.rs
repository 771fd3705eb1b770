//! PNG and JPEG encoding of rendered images.

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
    /// The image is larger than JPEG allows (65535 pixels a side).
    #[error("jpeg size: expected at most 65535x65535, found {width}x{height}")]
    JpegSize {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The JPEG encoder refused the image.
    #[error("jpeg encoding failed: {0}")]
    Jpeg(#[from] jpeg_encoder::EncodingError),
}

/// Encodes an image as an 8-bit RGB PNG.
pub fn encode_png(img: &Image) -> Result<Vec<u8>, EncodeError> {
    check_size(img)?;
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

/// Encodes an image as a baseline JPEG of `quality` (1..=100, clamped; below 90
/// the chroma is subsampled 2x2). The same image and quality always give the same bytes.
pub fn encode_jpeg(img: &Image, quality: u8) -> Result<Vec<u8>, EncodeError> {
    check_size(img)?;
    let (Ok(width), Ok(height)) = (u16::try_from(img.width), u16::try_from(img.height)) else {
        return Err(EncodeError::JpegSize { width: img.width, height: img.height });
    };
    let mut out = Vec::with_capacity(img.rgb.len() / 8);
    let encoder = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    encoder.encode(&img.rgb, width, height, jpeg_encoder::ColorType::Rgb)?;
    Ok(out)
}

fn check_size(img: &Image) -> Result<(), EncodeError> {
    let expected = u64::from(img.width) * u64::from(img.height) * 3;
    if img.rgb.len() as u64 != expected || expected == 0 {
        return Err(EncodeError::Size { width: img.width, height: img.height, expected, found: img.rgb.len() });
    }
    Ok(())
}
