//! Profile photo upload: `POST /avatar`, multipart field `avatar`.
//!
//! The file type is decided by the bytes, never by the client's file name or
//! content type; the image is decoded within bounds and encoded again
//! ([`super::images`]), and stored under a random name we choose, so a
//! client can neither upload a script disguised as an image, nor a
//! decompression bomb, nor leak their GPS position, nor pick a path.

use std::path::{Path, PathBuf};

use actix_multipart::Multipart;
use actix_session::Session;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;

use tokio::sync::Semaphore;

use super::images::{self, Refused};
use crate::app::login::{current_user, may_act_for};
use crate::app::AppState;
use crate::chat::registry::AvatarChanged;

/// Subdirectory of `UPLOAD_DIR` holding profile photos, served at `/avatars/`.
pub const AVATAR_DIR: &str = "avatars";
/// Largest accepted photo.
pub const MAX_AVATAR_BYTES: usize = 2 * 1024 * 1024;
/// Widest and tallest accepted photo (and each frame of an animation), in
/// pixels: a few kilobytes can declare 50000×50000, which a browser then
/// decodes into gigabytes.
pub const MAX_AVATAR_SIDE: u32 = 4096;
/// What decoding one photo may take: a 4096×4096 frame and its canvas.
const PHOTO_BOUNDS: images::Bounds = images::Bounds {
    max_side: MAX_AVATAR_SIDE,
    max_decoded: 2 * 4096 * 4096 * 4,
    max_frames: 500,
    max_animation: 64 * 1024 * 1024,
};
/// Photos decoded at once, on blocking threads: each may take 128 MiB and
/// seconds of CPU. Past it an upload waits, at most [`DECODE_WAIT`].
const DECODING_AT_ONCE: usize = 2;
const DECODE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
static DECODING: Semaphore = Semaphore::const_new(DECODING_AT_ONCE);
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
    // A login from before the operator took the account over is the
    // squatter's: it must not set the operator's photo.
    match state.store.find_user(&user).await {
        Ok(Some(account)) if may_act_for(&session, &account) => {}
        Ok(_) => return reply(StatusCode::UNAUTHORIZED, "log in again"),
        Err(err) => {
            tracing::warn!(error = %err, "store unavailable at avatar upload");
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage is unavailable, try again",
            );
        }
    }
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
    if images::sniff(&photo).is_none() {
        return reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refused::Unsupported.to_string(),
        );
    }
    let Ok(Ok(slot)) = tokio::time::timeout(DECODE_WAIT, DECODING.acquire()).await else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many photos are being processed; try again",
        );
    };
    let cleaned = tokio::task::spawn_blocking(move || images::clean(&photo, &PHOTO_BOUNDS)).await;
    drop(slot);
    let cleaned = match cleaned {
        Ok(Ok(cleaned)) => cleaned,
        Ok(Err(refused)) => {
            let status = match refused {
                Refused::Unsupported | Refused::Damaged(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            return reply(status, refused.to_string());
        }
        Err(err) => {
            tracing::error!(error = %err, "photo decoding failed");
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the photo could not be processed",
            );
        }
    };
    let (ext, photo) = (cleaned.ext, cleaned.bytes);

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
