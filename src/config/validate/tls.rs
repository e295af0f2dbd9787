//! `tls` and `upstream_tls`: certificates and keys are read and checked at load, so a wrong
//! path or an unreadable key is a config error, not a failed handshake later.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::Checker;
use crate::config::model::File;
use crate::config::ListenerTls;
use crate::tls::{client_config, ReloadingCert};

pub(super) fn tls(
    c: &mut Checker<'_>,
    raw: &File,
) -> (Option<ListenerTls>, Option<Arc<rustls::ClientConfig>>) {
    let listener = raw.tls.as_ref().and_then(|t| {
        match ReloadingCert::load(
            t.value.cert_file.0.clone().into(),
            t.value.key_file.0.clone().into(),
        ) {
            Ok(cert) => Some(ListenerTls {
                cert,
                reload_interval: t
                    .value
                    .reload_interval
                    .map_or(Duration::from_secs(30), |d| d.0),
            }),
            Err(e) => {
                c.err(t, "tls", e);
                None
            }
        }
    });
    let https = raw.upstream.value.starts_with("https://");
    let upstream = match &raw.upstream_tls {
        Some(u) if !https => {
            c.err(u, "upstream_tls", "upstream_tls needs an https:// upstream");
            None
        }
        Some(u) => {
            let v = &u.value;
            let client = match (&v.client_cert_file, &v.client_key_file) {
                (Some(cert), Some(key)) => Some((Path::new(&cert.0), Path::new(&key.0))),
                (None, None) => None,
                _ => {
                    c.err(
                        u,
                        "upstream_tls",
                        "client_cert_file and client_key_file go together",
                    );
                    None
                }
            };
            match client_config(v.ca_file.as_ref().map(|f| Path::new(&f.0)), client) {
                Ok(cfg) => Some(Arc::new(cfg)),
                Err(e) => {
                    c.err(u, "upstream_tls", e);
                    None
                }
            }
        }
        None if https => match client_config(None, None) {
            Ok(cfg) => Some(Arc::new(cfg)),
            Err(e) => {
                c.err(&raw.upstream, "upstream", e);
                None
            }
        },
        None => None,
    };
    (listener, upstream)
}
