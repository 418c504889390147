//! Profile photo upload: `POST /avatar`, multipart field `avatar`.
//!
//! The file type is decided by the bytes, never by the client's file name or
//! content type, and the file is stored under a random name we choose, so a
//! client can neither upload a script disguised as an image nor pick a path.

use std::path::{Path, PathBuf};

use actix_multipart::Multipart;
use actix_session::Session;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;

use crate::app::login::current_user;
use crate::app::AppState;
use crate::chat::registry::AvatarChanged;

/// Subdirectory of `UPLOAD_DIR` holding profile photos, served at `/avatars/`.
pub const AVATAR_DIR: &str = "avatars";
/// Largest accepted photo.
pub const MAX_AVATAR_BYTES: usize = 2 * 1024 * 1024;
/// Widest and tallest accepted photo, in pixels: a few kilobytes can
/// declare 50000×50000, which a browser then decodes into gigabytes.
pub const MAX_AVATAR_SIDE: usize = 4096;
/// Room for multipart headers and small extra fields around the photo.
const MAX_FORM_OVERHEAD: usize = 64 * 1024;
const URL_PREFIX: &str = "/avatars/";

fn reply(status: StatusCode, error: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": error.into() }))
}

fn too_large() -> HttpResponse {
    reply(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the photo is larger than {} MiB",
            MAX_AVATAR_BYTES / (1024 * 1024)
        ),
    )
}

/// The image format of `bytes`, by magic number, as a file extension.
pub fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
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

/// The file behind an avatar URL we issued, or `None` for anything else, so
/// a stored value can never make us delete outside the avatar directory.
fn stored_file(dir: &Path, url: &str) -> Option<PathBuf> {
    let name = url.strip_prefix(URL_PREFIX)?;
    let (stem, ext) = name.split_once('.')?;
    let ours = !stem.is_empty()
        && stem.bytes().all(|b| b.is_ascii_hexdigit())
        && matches!(ext, "png" | "jpg" | "gif" | "webp");
    ours.then(|| dir.join(name))
}

enum Upload {
    Photo(Vec<u8>),
    Refused(HttpResponse),
}

/// Reads the form, keeping the `avatar` field and discarding the others,
/// without ever buffering more than the limits allow.
async fn read_photo(mut form: Multipart) -> Upload {
    let mut photo: Option<Vec<u8>> = None;
    let mut overhead = 0usize;
    while let Some(field) = form.next().await {
        let mut field = match field {
            Ok(field) => field,
            Err(err) => {
                return Upload::Refused(reply(
                    StatusCode::BAD_REQUEST,
                    format!("not a valid multipart form: {err}"),
                ))
            }
        };
        let is_photo = field.name() == Some("avatar");
        if is_photo && photo.is_some() {
            return Upload::Refused(reply(StatusCode::BAD_REQUEST, "send one 'avatar' field"));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(err) => {
                    return Upload::Refused(reply(
                        StatusCode::BAD_REQUEST,
                        format!("upload interrupted: {err}"),
                    ))
                }
            };
            if is_photo {
                if bytes.len() + chunk.len() > MAX_AVATAR_BYTES {
                    return Upload::Refused(too_large());
                }
                bytes.extend_from_slice(&chunk);
            } else {
                overhead += chunk.len();
                if overhead > MAX_FORM_OVERHEAD {
                    return Upload::Refused(too_large());
                }
            }
        }
        if is_photo {
            photo = Some(bytes);
        }
    }
    match photo {
        Some(bytes) => Upload::Photo(bytes),
        None => Upload::Refused(reply(
            StatusCode::BAD_REQUEST,
            "the form has no 'avatar' file field",
        )),
    }
}

pub async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    form: Multipart,
) -> HttpResponse {
    let Some(user) = current_user(&session) else {
        return reply(StatusCode::UNAUTHORIZED, "log in first");
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_AVATAR_BYTES + MAX_FORM_OVERHEAD) {
        return too_large();
    }
    let photo = match read_photo(form).await {
        Upload::Photo(bytes) => bytes,
        Upload::Refused(response) => return response,
    };
    let Some(ext) = sniff_image(&photo) else {
        return reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "only PNG, JPEG, GIF or WebP images are accepted",
        );
    };
    match imagesize::blob_size(&photo) {
        Ok(size) if size.width <= MAX_AVATAR_SIDE && size.height <= MAX_AVATAR_SIDE => {}
        Ok(size) => {
            return reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the photo is {}×{} pixels; at most {MAX_AVATAR_SIDE}×{MAX_AVATAR_SIDE} are accepted",
                    size.width, size.height
                ),
            )
        }
        Err(_) => {
            return reply(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the image's size cannot be read: it is damaged or cut short",
            )
        }
    }

    let dir = state.config.upload_dir().join(AVATAR_DIR);
    let name = format!("{:032x}.{ext}", rand::random::<u128>());
    let path = dir.join(&name);
    if let Err(err) = write_file(&dir, &path, photo).await {
        tracing::error!(error = %err, dir = %dir.display(), "could not write avatar");
        return reply(
            StatusCode::INSUFFICIENT_STORAGE,
            "the photo could not be saved",
        );
    }
    let url = format!("{URL_PREFIX}{name}");
    let previous = match state.store.set_avatar(&user, Some(&url)).await {
        Ok(previous) => previous,
        Err(err) => {
            tracing::warn!(error = %err, "could not record avatar");
            let _ = tokio::fs::remove_file(&path).await;
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage is unavailable; your previous photo is unchanged",
            );
        }
    };
    if let Some(old) = previous.as_deref().and_then(|url| stored_file(&dir, url)) {
        if let Err(err) = tokio::fs::remove_file(&old).await {
            tracing::warn!(error = %err, file = %old.display(), "could not remove the old avatar");
        }
    }
    state.registry.do_send(AvatarChanged {
        user,
        avatar: Some(url.clone()),
    });
    HttpResponse::Ok().json(json!({ "avatar": url }))
}

async fn write_file(dir: &Path, path: &Path, bytes: Vec<u8>) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    tokio::fs::write(path, bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_content() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\n...."), Some("png"));
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("jpg"));
        assert_eq!(sniff_image(b"GIF89a.."), Some("gif"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("webp"));
        assert_eq!(sniff_image(b"<svg onload=alert(1)>"), None);
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WAVE"), None);
        assert_eq!(sniff_image(b""), None);
    }

    #[test]
    fn only_our_own_files_are_ever_deleted() {
        let dir = Path::new("/up/avatars");
        assert_eq!(
            stored_file(dir, "/avatars/00ff.png"),
            Some(PathBuf::from("/up/avatars/00ff.png"))
        );
        assert_eq!(stored_file(dir, "/avatars/../../etc/passwd"), None);
        assert_eq!(stored_file(dir, "/avatars/x.png"), None);
        assert_eq!(stored_file(dir, "/avatars/00ff.sh"), None);
        assert_eq!(stored_file(dir, "https://elsewhere/00ff.png"), None);
    }
}
