//! The demo page (`/demo/`, with `[server] demo = true`): a shared checklist and live pointers
//! built on the JavaScript client. The files are compiled into the binary, so the quick start
//! needs nothing beside it.

use actix_web::{HttpResponse, web};

const JS: &str = "text/javascript; charset=utf-8";

/// (path under /demo/, content type, body)
const FILES: &[(&str, &str, &str)] = &[
    (
        "",
        "text/html; charset=utf-8",
        include_str!("../demo/index.html"),
    ),
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../demo/index.html"),
    ),
    ("app.js", JS, include_str!("../demo/app.js")),
    ("mesh-client.js", JS, include_str!("../demo/mesh-client.js")),
    (
        "fast-json-patch.min.js",
        JS,
        include_str!("../demo/fast-json-patch.min.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../demo/style.css"),
    ),
];

/// Adds `/demo` (redirect) and `/demo/{file}`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/demo",
        web::get().to(|| async {
            // The page uses relative URLs, so it must be served under the trailing slash.
            HttpResponse::PermanentRedirect()
                .insert_header(("location", "/demo/"))
                .finish()
        }),
    );
    cfg.route(
        "/demo/{file:.*}",
        web::get().to(|file: web::Path<String>| async move {
            match FILES.iter().find(|(name, _, _)| *name == file.as_str()) {
                Some((_, content_type, body)) => HttpResponse::Ok()
                    .content_type(*content_type)
                    .insert_header(("cache-control", "no-cache"))
                    .body(*body),
                None => HttpResponse::NotFound().finish(),
            }
        }),
    );
}
