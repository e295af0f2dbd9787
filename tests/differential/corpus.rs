//! The variant corpus: every trick applied to every endpoint of the test route map, plus the
//! host, method, transport and body tricks where they apply, and the legitimate forms as
//! controls. A variant is a spec; the request id is added when it is sent.

use super::wire::gzip_stored;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// Raw HTTP/1.1, head and body in one write.
    H1,
    /// Raw HTTP/1.1, the body in 8 KiB writes 5 ms apart.
    H1Slow,
    /// HTTP/2 with prior knowledge (`host` is the `:authority`, `target` the `:path`).
    H2,
}

#[derive(Clone, Debug)]
pub struct Variant {
    /// `endpoint/trick`, unique.
    pub name: String,
    pub method: String,
    /// The request-target exactly as written (HTTP/1.1), or the `:path` (HTTP/2).
    pub target: String,
    /// The `Host` header (HTTP/1.1) or `:authority` (HTTP/2).
    pub host: String,
    /// Further headers, in order, duplicates allowed (`X-Request-Id` and framing are added).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub wire: Wire,
    /// Set on the legitimate form of an endpoint: the handler every upstream runs for it
    /// when it is sent directly (checked), and that authtrail must classify.
    pub control: Option<&'static str>,
}

impl Variant {
    /// The HTTP/1.1 head (with `Connection: close`) for request id `rid`.
    pub fn h1_head(&self, rid: &str) -> Vec<u8> {
        let mut h = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            self.method, self.target, self.host
        );
        h.push_str(&format!("X-Request-Id: {rid}\r\n"));
        for (k, v) in &self.headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        h.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        h.into_bytes()
    }
}

struct Endpoint {
    key: &'static str,
    segs: &'static [&'static str],
    host: &'static str,
    content_type: &'static str,
    body: &'static str,
    handler: &'static str,
}

pub const AUTH_HOST: &str = "auth.example.test";
pub const ADMIN_HOST: &str = "admin.example.test";

const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        key: "deactivate",
        segs: &["v1", "apps", "app-a", "users", "u1", "deactivate"],
        host: AUTH_HOST,
        content_type: "application/json",
        body: r#"{"reason":"test"}"#,
        handler: "deactivate",
    },
    Endpoint {
        key: "admin-delete",
        segs: &["v1", "admin", "users"],
        host: ADMIN_HOST,
        content_type: "application/json",
        body: r#"{"op":"delete","user":"u1"}"#,
        handler: "admin_users_delete",
    },
    Endpoint {
        key: "login",
        segs: &["v1", "login"],
        host: AUTH_HOST,
        content_type: "application/json",
        body: r#"{"username":"alice","password":"pw-1"}"#,
        handler: "login",
    },
    Endpoint {
        key: "token-password",
        segs: &["oauth", "token"],
        host: AUTH_HOST,
        content_type: "application/x-www-form-urlencoded",
        body: "grant_type=password&username=alice&password=pw-1",
        handler: "token_password",
    },
    Endpoint {
        key: "token-cc",
        segs: &["oauth", "token"],
        host: AUTH_HOST,
        content_type: "application/x-www-form-urlencoded",
        body: "grant_type=client_credentials&client_id=c1",
        handler: "token_client_credentials",
    },
];

fn join(segs: &[String], sep: &str) -> String {
    format!("/{}", segs.join(sep))
}

fn owned(segs: &[&str]) -> Vec<String> {
    segs.iter().map(|s| s.to_string()).collect()
}

/// `segs` joined by `/`, except `sep` between segment `i` and `i + 1`.
fn sep_at(segs: &[&str], i: usize, sep: &str) -> String {
    format!("/{}{sep}{}", segs[..=i].join("/"), segs[i + 1..].join("/"))
}

/// Every path spelling of `segs`: (trick, request path).
fn path_tricks(segs: &[&str]) -> Vec<(String, String)> {
    let n = segs.len();
    let plain = join(&owned(segs), "/");
    let last = n - 2; // the separator before the last segment
    let head = segs[0];
    let rest = segs[1..].join("/");
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, p: String| out.push((name.to_string(), p));
    for i in 0..n - 1 {
        add(&format!("slash-%2F@{i}"), sep_at(segs, i, "%2F"));
    }
    add("slash-%2f@last", sep_at(segs, last, "%2f"));
    add("slash-%2F-all", join(&owned(segs), "%2F"));
    add("slash-%2f-all", join(&owned(segs), "%2f"));
    add("leading-%2F", format!("/%2F{}", &plain[1..]));
    add("trailing-%2F", format!("{plain}%2F"));
    add("trailing-%2f", format!("{plain}%2f"));
    add("trailing-slash", format!("{plain}/"));
    add("double-%252F@last", sep_at(segs, last, "%252F"));
    add("double-%252F-all", join(&owned(segs), "%252F"));
    add("double-%252e%252e", format!("/{head}/x/%252e%252e/{rest}"));
    add("dotdot-%2e%2e", format!("/{head}/x/%2e%2e/{rest}"));
    add("dotdot-%2E%2E", format!("/{head}/x/%2E%2E/{rest}"));
    add("dotdot-.%2e", format!("/{head}/x/.%2e/{rest}"));
    add("dotdot-raw", format!("/{head}/x/../{rest}"));
    add(
        "dotdot-%2e%2e%2f-encoded",
        format!("/{head}/x%2F%2e%2e%2F{rest}"),
    );
    add("dot-/./", format!("/{head}/./{rest}"));
    add("dot-%2e", format!("/{head}/%2e/{rest}"));
    add("dot-trailing-/.", format!("{plain}/."));
    add("double-slash-leading", format!("/{plain}"));
    add("double-slash-middle", format!("/{head}//{rest}"));
    let title: Vec<String> = segs
        .iter()
        .map(|s| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    add("case-Title", join(&title, "/"));
    let upper: Vec<String> = segs.iter().map(|s| s.to_ascii_uppercase()).collect();
    add("case-UPPER", join(&upper, "/"));
    let mut last_up = owned(segs);
    last_up[n - 1] = last_up[n - 1].to_ascii_uppercase();
    add("case-last-UPPER", join(&last_up, "/"));
    add("backslash@last", sep_at(segs, last, "\\"));
    add("backslash-%5C@last", sep_at(segs, last, "%5C"));
    add("backslash-%5c@last", sep_at(segs, last, "%5c"));
    add("nul-%00-trailing", format!("{plain}%00"));
    add("nul-%00-middle", format!("/{head}%00/{rest}"));
    add("matrix-;x=1", format!("{plain};x=1"));
    add("matrix-;jsessionid", format!("{plain};jsessionid=0123ABCD"));
    add("matrix-first-;x=1", format!("/{head};x=1/{rest}"));
    add("matrix-%3Bx=1", format!("{plain}%3Bx=1"));
    let lastseg = segs[n - 1];
    let first = lastseg.as_bytes()[0];
    let escaped_upper = format!("%{first:02X}{}", &lastseg[1..]);
    let escaped_lower = format!("%{first:02x}{}", &lastseg[1..]);
    let mut esc = owned(segs);
    esc[n - 1] = escaped_upper;
    add("escaped-letter-upper-hex", join(&esc, "/"));
    esc[n - 1] = escaped_lower;
    add("escaped-letter-lower-hex", join(&esc, "/"));
    add("query-?x=1", format!("{plain}?x=1"));
    add("query-%3F", format!("{plain}%3Fx=1"));
    add("fragment-#x", format!("{plain}#x"));
    add("space-%20-trailing", format!("{plain}%20"));
    add("tab-%09-trailing", format!("{plain}%09"));
    add("overlong-%c0%af@last", sep_at(segs, last, "%c0%af"));
    add("fullwidth-%EF%BC%8F@last", sep_at(segs, last, "%EF%BC%8F"));
    out
}

fn base(e: &Endpoint, trick: &str) -> Variant {
    Variant {
        name: format!("{}/{trick}", e.key),
        method: "POST".into(),
        target: join(&owned(e.segs), "/"),
        host: e.host.into(),
        headers: vec![("Content-Type".into(), e.content_type.into())],
        body: e.body.as_bytes().to_vec(),
        wire: Wire::H1,
        control: None,
    }
}

fn with_body(mut v: Variant, content_type: Option<&str>, body: Vec<u8>) -> Variant {
    v.headers.retain(|(k, _)| k != "Content-Type");
    if let Some(ct) = content_type {
        v.headers.push(("Content-Type".into(), ct.into()));
    }
    v.body = body;
    v
}

fn multipart(fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "dIfFeReNtIaL0042";
    let mut b = String::new();
    for (k, v) in fields {
        b.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    b.push_str(&format!("--{boundary}--\r\n"));
    (
        format!("multipart/form-data; boundary={boundary}"),
        b.into_bytes(),
    )
}

/// Padding past the sidecar's `inspect_limit` (see `INSPECT_LIMIT` in `tests/differential.rs`).
pub const PAD: usize = 40 * 1024;

pub fn corpus() -> Vec<Variant> {
    let mut out = Vec::new();
    for e in ENDPOINTS {
        // Controls: the legitimate forms.
        let mut plain = base(e, "plain");
        plain.control = Some(e.handler);
        out.push(plain.clone());
        let mut h2 = base(e, "h2-plain");
        h2.wire = Wire::H2;
        h2.control = Some(e.handler);
        out.push(h2);

        for (trick, path) in path_tricks(e.segs) {
            let mut v = base(e, &trick);
            v.target = path;
            out.push(v);
        }

        // Request-target forms, HTTP/2 and methods.
        let mut v = base(e, "absolute-form");
        v.target = format!("http://{}{}", e.host, plain.target);
        out.push(v);
        let mut v = base(e, "absolute-form+slash-%2F-all");
        v.target = format!("http://{}{}", e.host, join(&owned(e.segs), "%2F"));
        out.push(v);
        for (trick, path) in [
            ("h2-slash-%2F-all", join(&owned(e.segs), "%2F")),
            ("h2-slash-%2F@last", sep_at(e.segs, e.segs.len() - 2, "%2F")),
            ("h2-dotdot-%2e%2e", {
                let rest = e.segs[1..].join("/");
                format!("/{}/x/%2e%2e/{rest}", e.segs[0])
            }),
            (
                "h2-case-UPPER",
                join(
                    &e.segs
                        .iter()
                        .map(|s| s.to_ascii_uppercase())
                        .collect::<Vec<_>>(),
                    "/",
                ),
            ),
        ] {
            let mut v = base(e, trick);
            v.wire = Wire::H2;
            v.target = path;
            out.push(v);
        }
        let mut v = base(e, "h2-method-post-lowercase");
        v.wire = Wire::H2;
        v.method = "post".into();
        out.push(v);
        let mut v = base(e, "method-post-lowercase");
        v.method = "post".into();
        out.push(v);
        let mut v = base(e, "method-Post-mixed");
        v.method = "Post".into();
        out.push(v);
        let mut v = base(e, "method-override-get");
        v.method = "GET".into();
        v.headers
            .push(("X-HTTP-Method-Override".into(), "POST".into()));
        out.push(v);
        let mut v = base(e, "two-authorization-headers");
        v.headers
            .push(("Authorization".into(), "Bearer not-a-valid-token".into()));
        v.headers.push((
            "Authorization".into(),
            "Bearer eyJhbGciOiJub25lIn0.eyJyb2xlIjoiYWRtaW4ifQ.".into(),
        ));
        out.push(v);
    }

    // The host-bound route: host spellings.
    let admin = &ENDPOINTS[1];
    for (trick, host) in [
        ("host-trailing-dot", "admin.example.test."),
        ("host-UPPER", "ADMIN.EXAMPLE.TEST"),
        ("host-Mixed-case", "Admin.Example.Test"),
        ("host-port-80", "admin.example.test:80"),
        ("host-port-8443", "admin.example.test:8443"),
        ("host-trailing-dot-port-80", "admin.example.test.:80"),
        ("host-trailing-dots-2", "admin.example.test.."),
    ] {
        let mut v = base(admin, trick);
        v.host = host.into();
        out.push(v);
    }
    let mut v = base(admin, "host-absolute-form-authority-vs-host-header");
    v.target = format!("http://{ADMIN_HOST}/v1/admin/users");
    v.host = AUTH_HOST.into();
    out.push(v);
    let mut v = base(admin, "host-absolute-form-trailing-dot");
    v.target = "http://admin.example.test./v1/admin/users".into();
    v.host = "admin.example.test.".into();
    out.push(v);
    for (trick, host) in [
        ("h2-authority-trailing-dot", "admin.example.test."),
        ("h2-authority-UPPER", "ADMIN.EXAMPLE.TEST"),
        ("h2-authority-port-8443", "admin.example.test:8443"),
    ] {
        let mut v = base(admin, trick);
        v.wire = Wire::H2;
        v.host = host.into();
        out.push(v);
    }

    // The body-conditioned routes: body tricks.
    let pad = "x".repeat(PAD);
    let json = Some("application/json");
    let admin_bodies: Vec<(&str, Option<&str>, Vec<u8>, Wire)> = vec![
        (
            "padded-op-last-one-write",
            json,
            format!(r#"{{"pad":"{pad}","op":"delete","user":"u1"}}"#).into_bytes(),
            Wire::H1,
        ),
        (
            "padded-op-last-8KiB-writes",
            json,
            format!(r#"{{"pad":"{pad}","op":"delete","user":"u1"}}"#).into_bytes(),
            Wire::H1Slow,
        ),
        (
            "padded-op-first-one-write",
            json,
            format!(r#"{{"op":"delete","user":"u1","pad":"{pad}"}}"#).into_bytes(),
            Wire::H1,
        ),
        (
            "padded-op-first-8KiB-writes",
            json,
            format!(r#"{{"op":"delete","user":"u1","pad":"{pad}"}}"#).into_bytes(),
            Wire::H1Slow,
        ),
        (
            "padded-whitespace-8KiB-writes",
            json,
            format!("{}{}", " ".repeat(PAD), r#"{"op":"delete","user":"u1"}"#).into_bytes(),
            Wire::H1Slow,
        ),
        (
            "text/plain",
            Some("text/plain"),
            br#"{"op":"delete","user":"u1"}"#.to_vec(),
            Wire::H1,
        ),
        (
            "no-content-type",
            None,
            br#"{"op":"delete","user":"u1"}"#.to_vec(),
            Wire::H1,
        ),
        (
            "json-charset",
            Some("application/json; charset=utf-8"),
            br#"{"op":"delete","user":"u1"}"#.to_vec(),
            Wire::H1,
        ),
        (
            "json-type-case",
            Some("Application/JSON"),
            br#"{"op":"delete","user":"u1"}"#.to_vec(),
            Wire::H1,
        ),
        (
            "json-suffix-type",
            Some("application/merge-patch+json"),
            br#"{"op":"delete","user":"u1"}"#.to_vec(),
            Wire::H1,
        ),
        (
            "json-dup-key-read-then-delete",
            json,
            br#"{"op":"read","op":"delete","user":"u1"}"#.to_vec(),
            Wire::H1,
        ),
        (
            "json-dup-key-delete-then-read",
            json,
            br#"{"op":"delete","op":"read","user":"u1"}"#.to_vec(),
            Wire::H1,
        ),
        (
            "json-unicode-escape",
            json,
            br#"{"op":"d\u0065lete","user":"u1"}"#.to_vec(),
            Wire::H1,
        ),
        (
            "form-body-op-delete",
            Some("application/x-www-form-urlencoded"),
            b"op=delete&user=u1".to_vec(),
            Wire::H1,
        ),
    ];
    for (trick, ct, body, wire) in admin_bodies {
        let mut v = with_body(base(admin, trick), ct, body);
        v.wire = wire;
        out.push(v);
    }
    let mut v = with_body(
        base(admin, "gzip"),
        json,
        gzip_stored(br#"{"op":"delete","user":"u1"}"#),
    );
    v.headers.push(("Content-Encoding".into(), "gzip".into()));
    out.push(v);
    let (ct, body) = multipart(&[("op", "delete"), ("user", "u1")]);
    out.push(with_body(base(admin, "multipart"), Some(&ct), body));

    for (e, grant, other) in [
        (&ENDPOINTS[3], "password", "client_credentials"),
        (&ENDPOINTS[4], "client_credentials", "password"),
    ] {
        let form = Some("application/x-www-form-urlencoded");
        let bodies: Vec<(&str, Option<&str>, Vec<u8>, Wire)> = vec![
            (
                "dup-field-this-first",
                form,
                format!("grant_type={grant}&grant_type={other}").into_bytes(),
                Wire::H1,
            ),
            (
                "dup-field-this-last",
                form,
                format!("grant_type={other}&grant_type={grant}").into_bytes(),
                Wire::H1,
            ),
            (
                "text/plain",
                Some("text/plain"),
                format!("grant_type={grant}").into_bytes(),
                Wire::H1,
            ),
            (
                "json-body",
                json,
                format!(r#"{{"grant_type":"{grant}"}}"#).into_bytes(),
                Wire::H1,
            ),
            (
                "form-charset",
                Some("application/x-www-form-urlencoded; charset=utf-8"),
                format!("grant_type={grant}").into_bytes(),
                Wire::H1,
            ),
            (
                "form-value-escaped",
                form,
                format!("grant_type=%{:02X}{}", grant.as_bytes()[0], &grant[1..]).into_bytes(),
                Wire::H1,
            ),
            (
                "form-key-escaped",
                form,
                format!("grant%5Ftype={grant}").into_bytes(),
                Wire::H1,
            ),
            (
                "padded-field-last-one-write",
                form,
                format!("pad={pad}&grant_type={grant}").into_bytes(),
                Wire::H1,
            ),
            (
                "padded-field-last-8KiB-writes",
                form,
                format!("pad={pad}&grant_type={grant}").into_bytes(),
                Wire::H1Slow,
            ),
            (
                "padded-field-first-8KiB-writes",
                form,
                format!("grant_type={grant}&pad={pad}").into_bytes(),
                Wire::H1Slow,
            ),
        ];
        for (trick, ct, body, wire) in bodies {
            let mut v = with_body(base(e, trick), ct, body);
            v.wire = wire;
            out.push(v);
        }
        let mut v = with_body(
            base(e, "gzip"),
            form,
            gzip_stored(format!("grant_type={grant}").as_bytes()),
        );
        v.headers.push(("Content-Encoding".into(), "gzip".into()));
        out.push(v);
        let (ct, body) = multipart(&[("grant_type", grant), ("client_id", "c1")]);
        out.push(with_body(base(e, "multipart"), Some(&ct), body));
    }
    out
}
