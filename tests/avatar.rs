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
    assert_eq!(served.bytes().await.unwrap().as_ref(), PNG);

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
