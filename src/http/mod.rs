//! HTTP: pages, login, uploads, health, the server API, and the route
//! table (which hands `/ws` to [`crate::ws`]). The state every endpoint
//! shares lives in [`crate::app`], below both.

pub mod api;
pub mod auth;
pub mod avatar;
pub mod health;
pub mod images;
pub mod metrics;
pub mod pages;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{http::header, web, HttpResponse};

use crate::app::request::{over_https, same_origin};

/// Probes: outside the session middleware, so they answer even when the
/// session store cannot (a probe sent with a cookie must not fail on it).
pub fn health_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::live))
        .route("/readyz", web::get().to(health::ready));
}

/// Everything a user reaches; runs inside the session middleware.
pub fn routes(cfg: &mut web::ServiceConfig, upload_dir: &std::path::Path) {
    cfg.route("/", web::get().to(pages::chat))
        .route("/login", web::get().to(auth::login_page))
        .route("/login", web::post().to(auth::login))
        .route("/logout", web::post().to(auth::logout))
        .route("/avatar", web::post().to(avatar::upload))
        .service(
            web::resource("/ws")
                .wrap_fn(|mut request, service| {
                    crate::ws::frames::gauge(&mut request);
                    service.call(request)
                })
                .route(web::get().to(crate::ws::upgrade)),
        )
        .route("/static/{file}", web::get().to(pages::asset))
        .service(actix_files::Files::new(
            "/avatars",
            upload_dir.join(avatar::AVATAR_DIR),
        ));
}

/// Headers on every response: user content is never sniffed into HTML or
/// script, pages are not framed, and scripts run only from our own files.
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "same-origin"))
        .add((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; object-src 'none'; \
             base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
        ))
}

/// What a browser that reached us over HTTPS keeps to HTTPS: a year.
const HSTS: &str = "max-age=31536000";

/// Over HTTPS, answers carry HSTS and every cookie is `Secure`, so a
/// login made over HTTPS never travels over plain HTTP, whether the
/// operator set `COOKIE_SECURE` or the proxy terminates TLS.
pub async fn https_only(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let https = req
        .app_data::<web::Data<crate::app::AppState>>()
        .is_some_and(|state| over_https(req.request(), &state.config));
    let mut response = next.call(req).await?;
    if https {
        let headers = response.headers_mut();
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            header::HeaderValue::from_static(HSTS),
        );
        let cookies: Vec<_> = headers.get_all(header::SET_COOKIE).cloned().collect();
        headers.remove(header::SET_COOKIE);
        for value in cookies {
            let secure = value
                .to_str()
                .ok()
                .and_then(|text| actix_web::cookie::Cookie::parse(text.to_owned()).ok())
                .and_then(|mut cookie| {
                    cookie.set_secure(true);
                    header::HeaderValue::from_str(&cookie.to_string()).ok()
                });
            headers.append(header::SET_COOKIE, secure.unwrap_or(value));
        }
    }
    Ok(response)
}

/// Refuses a POST (log in, log out, upload a photo) from a page on another
/// site: the session cookie's `SameSite=Lax` does not stop a cross-site form
/// from logging a browser in as the attacker, or a user out.
pub async fn same_site_posts(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == actix_web::http::Method::POST && !same_origin(req.request()) {
        tracing::info!(path = %req.path(), "refused a cross-site POST");
        return Err(CrossSite.into());
    }
    next.call(req).await
}

#[derive(Debug, thiserror::Error)]
#[error("Requests from other sites are refused.")]
struct CrossSite;

impl actix_web::ResponseError for CrossSite {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::FORBIDDEN
    }
}

/// Turns the opaque 500 that the session middleware answers when it cannot
/// reach the session store into a 503 that says so; the browser client
/// retries on it, and nothing about the user's session is lost.
pub async fn storage_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let path = req.path().to_owned();
    next.call(req).await.map_err(|err| {
        if err.as_response_error().status_code().is_server_error() {
            tracing::warn!(%path, error = %err, "session store unavailable");
            StorageUnavailable.into()
        } else {
            err
        }
    })
}

#[derive(Debug, thiserror::Error)]
#[error("Storage is unavailable right now; try again shortly.")]
struct StorageUnavailable;

impl actix_web::ResponseError for StorageUnavailable {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .body(self.to_string())
    }
}

/// A `303 See Other` to `to`: where a form post or a page without login leads.
pub fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

/// Renders an askama template with the given status.
pub fn render(status: actix_web::http::StatusCode, page: &impl askama::Template) -> HttpResponse {
    match page.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(err) => {
            tracing::error!(error = %err, "template failed to render");
            HttpResponse::InternalServerError().body("page failed to render")
        }
    }
}
