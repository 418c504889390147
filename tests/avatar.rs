//! Profile photos: accepted by content, stored under our own names, served,
//! and attached to the user's messages.

mod common;

use common::{Client, TestServer, PNG};
use reqwest::multipart::{Form, Part};

async fn upload(
    client: &Client,
    field: &str,
    file_name: &str,
    bytes: Vec<u8>,
) -> reqwest::Response {
    let form = Form::new().part(
        field.to_owned(),
        Part::bytes(bytes).file_name(file_name.to_owned()),
    );
    client
        .http
        .post(format!("{}/avatar", client.base))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn upload_replace_and_show_on_messages() {
    let (dir, server) = TestServer::fresh().await;
    let alice = Client::logged_in(&server, "alice").await;
    let mut ws = alice.ws().await;
    ws.join("general").await;

    // The name says .txt and the content type is wrong; the bytes decide.
    let response = upload(&alice, "avatar", "../../evil.txt", PNG.to_vec()).await;
    assert_eq!(response.status(), 200);
    let first: serde_json::Value = response.json().await.unwrap();
    let first = first["avatar"].as_str().unwrap().to_owned();
    assert!(
        first.starts_with("/avatars/") && first.ends_with(".png"),
        "{first}"
    );
    let served = alice.get(&first).await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/png");
    let served = image::load_from_memory(&served.bytes().await.unwrap()).unwrap();
    let uploaded = image::load_from_memory(PNG).unwrap();
    assert_eq!(
        served.to_rgba8(),
        uploaded.to_rgba8(),
        "our own encoding of the same pixels"
    );

    // Live messages and history carry the photo.
    ws.say("general", "look at me", "1").await;
    assert_eq!(ws.recv_type("message").await["avatar"], first.as_str());

    let second: serde_json::Value = upload(&alice, "avatar", "me.png", PNG.to_vec())
        .await
        .json()
        .await
        .unwrap();
    let second = second["avatar"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(
        alice.get(&first).await.status(),
        404,
        "the old file is removed"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path().join("uploads/avatars"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1, "only the current photo is kept");

    let bob = Client::logged_in(&server, "bob").await;
    let joined = bob.ws().await.join("general").await;
    assert_eq!(
        joined["history"][0]["avatar"],
        second.as_str(),
        "history shows the current photo"
    );
    server.stop().await;
}

#[actix_web::test]
async fn bad_uploads_are_refused_and_change_nothing() {
    let (dir, server) = TestServer::fresh().await;
    let alice = Client::logged_in(&server, "alice").await;
    let good: serde_json::Value = upload(&alice, "avatar", "a.png", PNG.to_vec())
        .await
        .json()
        .await
        .unwrap();
    let good = good["avatar"].as_str().unwrap().to_owned();

    let svg = upload(
        &alice,
        "avatar",
        "x.png",
        b"<svg onload=alert(1)></svg>".to_vec(),
    )
    .await;
    assert_eq!(svg.status(), 415);
    assert!(svg.text().await.unwrap().contains("PNG, JPEG, GIF or WebP"));

    // 29 bytes that declare 50000×50000 pixels (a decompression bomb for
    // every browser that shows the photo).
    let mut huge = PNG.to_vec();
    huge[16..20].copy_from_slice(&50_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&50_000u32.to_be_bytes());
    let crc = crc32(&huge[12..29]);
    huge[29..33].copy_from_slice(&crc.to_be_bytes());
    let refused = upload(&alice, "avatar", "huge.png", huge).await;
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("50000×50000"));

    let mut big = PNG.to_vec();
    big.resize(2 * 1024 * 1024 + 1, 0);
    assert_eq!(upload(&alice, "avatar", "big.png", big).await.status(), 413);
    assert_eq!(
        upload(&alice, "photo", "a.png", PNG.to_vec())
            .await
            .status(),
        400,
        "wrong field"
    );
    let not_multipart = alice
        .http
        .post(format!("{}/avatar", alice.base))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(not_multipart.status(), 400);

    let anonymous = Client::new(&server);
    assert_eq!(
        upload(&anonymous, "avatar", "a.png", PNG.to_vec())
            .await
            .status(),
        401
    );

    // The accepted photo is untouched and is still the only file.
    assert_eq!(alice.get(&good).await.status(), 200);
    let files: Vec<_> = std::fs::read_dir(dir.path().join("uploads/avatars"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1);
    server.stop().await;
}

fn encoded(format: image::ImageFormat, side: u32) -> Vec<u8> {
    let pixels = image::RgbImage::from_pixel(side, side, image::Rgb([200, 30, 60]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(pixels)
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

/// JPEG, GIF and WebP are accepted as PNG is, each stored as our own
/// encoding: the GPS position in a JPEG's EXIF is not served to everyone.
/// A GIF whose header says 1×1 and whose frame is 16000×16000 is refused,
/// as is an animation of too many frames, and neither is stored.
#[actix_web::test]
async fn every_format_is_decoded_and_stored_anew_and_bombs_are_refused() {
    let (dir, server) = TestServer::fresh().await;
    let alice = Client::logged_in(&server, "alice").await;
    let jpeg = encoded(image::ImageFormat::Jpeg, 40);
    let exif = b"Exif\0\0MM\0*\0\0\0\x08\0\0GPS 51.5007N 0.1246W";
    let mut tagged = jpeg[..2].to_vec();
    tagged.extend_from_slice(&[0xFF, 0xE1]);
    tagged.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    tagged.extend_from_slice(exif);
    tagged.extend_from_slice(&jpeg[2..]);
    for (name, bytes, ext, content_type) in [
        ("me.jpg", tagged, ".jpg", "image/jpeg"),
        (
            "me.gif",
            encoded(image::ImageFormat::Gif, 40),
            ".gif",
            "image/gif",
        ),
        (
            "me.webp",
            encoded(image::ImageFormat::WebP, 40),
            ".webp",
            "image/webp",
        ),
    ] {
        let response = upload(&alice, "avatar", name, bytes).await;
        assert_eq!(response.status(), 200, "{name}");
        let body: serde_json::Value = response.json().await.unwrap();
        let url = body["avatar"].as_str().unwrap().to_owned();
        assert!(url.ends_with(ext), "{url}");
        let served = alice.get(&url).await;
        assert_eq!(served.headers()["content-type"], content_type);
        let served = served.bytes().await.unwrap();
        assert!(
            !String::from_utf8_lossy(&served).contains("GPS"),
            "{name}: the EXIF was served"
        );
        let pixels = image::load_from_memory(&served).unwrap().to_rgb8();
        assert_eq!(pixels.dimensions(), (40, 40), "{name}");
    }
    let kept = std::fs::read_dir(dir.path().join("uploads/avatars"))
        .unwrap()
        .count();

    // The logical screen says 1×1; the one frame is 16000×16000, which
    // decoded would take a gigabyte.
    let mut bomb = Vec::new();
    bomb.extend_from_slice(b"GIF89a");
    bomb.extend_from_slice(&1u16.to_le_bytes());
    bomb.extend_from_slice(&1u16.to_le_bytes());
    bomb.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 255, 255, 255]);
    bomb.push(0x2C);
    bomb.extend_from_slice(&[0, 0, 0, 0]);
    bomb.extend_from_slice(&16000u16.to_le_bytes());
    bomb.extend_from_slice(&16000u16.to_le_bytes());
    bomb.extend_from_slice(&[0, 2, 2, 0x4C, 0x01, 0, 0x3B]);
    let refused = upload(&alice, "avatar", "bomb.gif", bomb).await;
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("frame"));

    // 600 frames of 64×64: each small, too many together.
    let mut animation = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new_with_speed(&mut animation, 30);
        let frames = (0..600u32).map(|n| {
            let pixels = image::RgbaImage::from_pixel(64, 64, image::Rgba([n as u8, 0, 0, 255]));
            image::Frame::new(pixels)
        });
        encoder.encode_frames(frames).unwrap();
    }
    let refused = upload(&alice, "avatar", "long.gif", animation).await;
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("frames"));
    assert_eq!(
        std::fs::read_dir(dir.path().join("uploads/avatars"))
            .unwrap()
            .count(),
        kept,
        "nothing refused was stored"
    );
    server.stop().await;
}

/// The PNG chunk checksum (CRC-32, ISO-HDLC), so a forged header is not
/// refused as merely damaged.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
