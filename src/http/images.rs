//! Uploaded images, decoded within bounds and encoded again.
//!
//! A header tells little: a GIF's logical screen may say 1×1 while its
//! frames are 16000×16000, and an animation may hold thousands of frames.
//! Every image is therefore decoded, frame by frame, under a pixel and a
//! memory bound, and what is stored is our own encoding of those pixels:
//! nothing of the upload's bytes (EXIF with GPS positions, text chunks,
//! trailing data, a polyglot's script) survives. JPEG orientation is
//! applied to the pixels before the tag goes.

use std::io::Cursor;

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::error::LimitErrorKind;
use image::{
    AnimationDecoder, DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits,
};

/// JPEG quality of the stored copy: visually the same as a camera's.
const JPEG_QUALITY: u8 = 90;
/// GIF quantisation speed (1 best, 30 fastest): frames are quantised again
/// on encoding, and an avatar is small on screen.
const GIF_SPEED: i32 = 20;

/// What an image may cost to decode.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Widest and tallest, in pixels, of the image and of every frame.
    pub max_side: u32,
    /// Bytes of decoded pixels at once (one frame and the canvas, RGBA).
    pub max_decoded: u64,
    /// Frames of an animation.
    pub max_frames: usize,
    /// Bytes of decoded pixels of all frames of an animation together.
    pub max_animation: u64,
}

/// The stored copy.
#[derive(Debug)]
pub struct Cleaned {
    pub bytes: Vec<u8>,
    /// The file extension of `bytes`' format.
    pub ext: &'static str,
    pub width: u32,
    pub height: u32,
}

/// Why an image is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("only PNG, JPEG, GIF or WebP images are accepted")]
    Unsupported,
    #[error("the image is {width}×{height} pixels; at most {max}×{max} are accepted")]
    Oversized { width: u32, height: u32, max: u32 },
    #[error("a frame of the image is larger than {max}×{max} pixels or than the memory an image may take")]
    OversizedFrame { max: u32 },
    #[error("the animation has more than {max} frames")]
    TooManyFrames { max: usize },
    #[error("the animation's frames together take more than {max_mib} MiB decoded")]
    AnimationTooLarge { max_mib: u64 },
    #[error("the image cannot be read: it is damaged or cut short")]
    Damaged(#[source] ImageError),
}

/// The image format of `bytes`, by magic number, as a file extension.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("jpg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("webp")
    } else {
        None
    }
}

/// Decodes `bytes` within `bounds` and encodes the pixels again, in the
/// same format (a WebP as lossless WebP; an animated WebP or PNG keeps
/// its first frame). CPU-bound: call it off the async threads.
pub fn clean(bytes: &[u8], bounds: &Bounds) -> Result<Cleaned, Refused> {
    let ext = sniff(bytes).ok_or(Refused::Unsupported)?;
    if ext == "gif" {
        return clean_gif(bytes, bounds);
    }
    let format = match ext {
        "png" => ImageFormat::Png,
        "jpg" => ImageFormat::Jpeg,
        _ => ImageFormat::WebP,
    };
    // The header first, to say how large the image claims to be; the
    // bounds apply from the pixels on.
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(|err| refusal(err, bounds))?;
    check_side(decoder.dimensions(), bounds)?;
    decoder
        .set_limits(limits(bounds))
        .map_err(|err| refusal(err, bounds))?;
    let orientation = decoder.orientation().map_err(|err| refusal(err, bounds))?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|err| refusal(err, bounds))?;
    image.apply_orientation(orientation);
    let (width, height) = (image.width(), image.height());
    let mut out = Vec::new();
    let encoded = match format {
        ImageFormat::Png => image.write_with_encoder(PngEncoder::new(&mut out)),
        ImageFormat::Jpeg => DynamicImage::ImageRgb8(image.to_rgb8())
            .write_with_encoder(JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)),
        _ => DynamicImage::ImageRgba8(image.to_rgba8())
            .write_with_encoder(WebPEncoder::new_lossless(&mut out)),
    };
    encoded.map_err(Refused::Damaged)?;
    Ok(Cleaned {
        bytes: out,
        ext,
        width,
        height,
    })
}

/// Every frame of a GIF, each bounded, their count and sum bounded, then
/// encoded as a new GIF that loops as the original did (forever).
fn clean_gif(bytes: &[u8], bounds: &Bounds) -> Result<Cleaned, Refused> {
    let mut decoder = GifDecoder::new(Cursor::new(bytes)).map_err(|err| refusal(err, bounds))?;
    let (width, height) = decoder.dimensions();
    check_side((width, height), bounds)?;
    decoder
        .set_limits(limits(bounds))
        .map_err(|err| refusal(err, bounds))?;
    let canvas = u64::from(width) * u64::from(height) * 4;
    let mut frames = Vec::new();
    for frame in decoder.into_frames() {
        let frame = frame.map_err(|err| refusal(err, bounds))?;
        if frames.len() == bounds.max_frames {
            return Err(Refused::TooManyFrames {
                max: bounds.max_frames,
            });
        }
        if canvas * (frames.len() as u64 + 1) > bounds.max_animation {
            return Err(Refused::AnimationTooLarge {
                max_mib: bounds.max_animation >> 20,
            });
        }
        frames.push(frame);
    }
    if frames.is_empty() {
        return Err(Refused::Damaged(ImageError::IoError(
            std::io::ErrorKind::UnexpectedEof.into(),
        )));
    }
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new_with_speed(&mut out, GIF_SPEED);
        encoder
            .set_repeat(Repeat::Infinite)
            .map_err(Refused::Damaged)?;
        encoder.encode_frames(frames).map_err(Refused::Damaged)?;
    }
    Ok(Cleaned {
        bytes: out,
        ext: "gif",
        width,
        height,
    })
}

fn limits(bounds: &Bounds) -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(bounds.max_side);
    limits.max_image_height = Some(bounds.max_side);
    limits.max_alloc = Some(bounds.max_decoded);
    limits
}

fn check_side((width, height): (u32, u32), bounds: &Bounds) -> Result<(), Refused> {
    if width > bounds.max_side || height > bounds.max_side {
        return Err(Refused::Oversized {
            width,
            height,
            max: bounds.max_side,
        });
    }
    Ok(())
}

/// A decoder's error as a refusal: a limit hit mid-decode is a frame (or
/// a chunk) larger than the header said.
fn refusal(err: ImageError, bounds: &Bounds) -> Refused {
    match &err {
        ImageError::Limits(limit)
            if matches!(
                limit.kind(),
                LimitErrorKind::DimensionError | LimitErrorKind::InsufficientMemory
            ) =>
        {
            Refused::OversizedFrame {
                max: bounds.max_side,
            }
        }
        _ => Refused::Damaged(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Delay, Frame, Rgba, RgbaImage};

    const BOUNDS: Bounds = Bounds {
        max_side: 64,
        max_decoded: 64 * 64 * 4 * 4,
        max_frames: 5,
        max_animation: 64 * 64 * 4 * 5,
    };

    fn encoded(format: ImageFormat, side: u32) -> Vec<u8> {
        let image =
            DynamicImage::ImageRgba8(RgbaImage::from_pixel(side, side, Rgba([9, 99, 199, 255])));
        let mut out = Cursor::new(Vec::new());
        match format {
            ImageFormat::Jpeg => {
                DynamicImage::ImageRgb8(image.to_rgb8()).write_to(&mut out, format)
            }
            _ => image.write_to(&mut out, format),
        }
        .unwrap();
        out.into_inner()
    }

    fn gif(frames: usize, side: u32) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut encoder = GifEncoder::new(&mut out);
            let frames = (0..frames).map(|n| {
                let pixel = Rgba([n as u8, 0, 0, 255]);
                Frame::from_parts(
                    RgbaImage::from_pixel(side, side, pixel),
                    0,
                    0,
                    Delay::from_numer_denom_ms(100, 1),
                )
            });
            encoder.encode_frames(frames).unwrap();
        }
        out
    }

    #[test]
    fn sniffs_by_content() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("png"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("jpg"));
        assert_eq!(sniff(b"GIF89a.."), Some("gif"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("webp"));
        assert_eq!(sniff(b"<svg onload=alert(1)>"), None);
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVE"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn every_format_comes_back_as_itself_with_its_pixels() {
        for (format, ext) in [
            (ImageFormat::Png, "png"),
            (ImageFormat::Jpeg, "jpg"),
            (ImageFormat::WebP, "webp"),
            (ImageFormat::Gif, "gif"),
        ] {
            let cleaned = clean(&encoded(format, 16), &BOUNDS).unwrap();
            assert_eq!((cleaned.ext, cleaned.width, cleaned.height), (ext, 16, 16));
            let back = image::load_from_memory(&cleaned.bytes).unwrap().to_rgba8();
            let pixel = back.get_pixel(8, 8).0;
            assert!(
                pixel
                    .iter()
                    .zip([9u8, 99, 199, 255])
                    .all(|(a, b)| a.abs_diff(b) <= 8),
                "{ext}: {pixel:?}"
            );
        }
    }

    #[test]
    fn a_frame_larger_than_the_screen_is_refused() {
        // A 1×1 logical screen whose frame is 1000×1000: the header alone
        // says 1×1.
        let mut bomb = gif(1, 1000);
        bomb[6..8].copy_from_slice(&1u16.to_le_bytes());
        bomb[8..10].copy_from_slice(&1u16.to_le_bytes());
        assert!(
            matches!(clean(&bomb, &BOUNDS), Err(Refused::OversizedFrame { .. })),
            "{:?}",
            clean(&bomb, &BOUNDS)
        );
    }

    #[test]
    fn animations_are_bounded_by_frames_and_by_their_sum() {
        assert_eq!(clean(&gif(5, 16), &BOUNDS).unwrap().ext, "gif");
        assert!(matches!(
            clean(&gif(6, 16), &BOUNDS),
            Err(Refused::TooManyFrames { max: 5 })
        ));
        let tight = Bounds {
            max_animation: 16 * 16 * 4 * 3,
            ..BOUNDS
        };
        assert!(matches!(
            clean(&gif(4, 16), &tight),
            Err(Refused::AnimationTooLarge { .. })
        ));
    }

    #[test]
    fn a_large_image_is_refused_by_its_size() {
        assert!(matches!(
            clean(&encoded(ImageFormat::Png, 65), &BOUNDS),
            Err(Refused::Oversized {
                width: 65,
                height: 65,
                max: 64
            })
        ));
    }

    #[test]
    fn metadata_and_trailing_bytes_are_gone() {
        // A JPEG with an EXIF segment right after its start marker.
        let jpeg = encoded(ImageFormat::Jpeg, 8);
        let exif = b"Exif\0\0MM\0*\0\0\0\x08\0\0GPS 51.5N 0.12W";
        let mut tagged = jpeg[..2].to_vec();
        tagged.extend_from_slice(&[0xFF, 0xE1]);
        tagged.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        tagged.extend_from_slice(exif);
        tagged.extend_from_slice(&jpeg[2..]);
        tagged.extend_from_slice(b"<script>alert(1)</script>");
        let cleaned = clean(&tagged, &BOUNDS).unwrap();
        let text = String::from_utf8_lossy(&cleaned.bytes);
        assert!(!text.contains("GPS") && !text.contains("Exif") && !text.contains("script"));
    }

    #[test]
    fn truncated_images_are_damaged() {
        let png = encoded(ImageFormat::Png, 32);
        assert!(matches!(
            clean(&png[..png.len() / 2], &BOUNDS),
            Err(Refused::Damaged(_))
        ));
    }
}
