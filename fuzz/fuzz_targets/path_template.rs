//! Path templates and request-path normalisation: `TEMPLATE \n PATH \n OTHER_TEMPLATE`.
//! Besides never panicking: normalised segments are never empty, `.` or `..`; `matches` and
//! `explain` agree; a match binds every parameter; and `covers` (used to reject shadowed
//! routes) is sound: when a template covers another, it matches every path the other matches.
#![no_main]

use authtrail::classify::{self, normalize, PathTemplate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let mut parts = s.splitn(3, '\n');
    let tpl = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let other = parts.next().unwrap_or("");

    let segs = normalize(path);
    for seg in &segs {
        assert!(!seg.is_empty() && seg != "." && seg != "..", "{seg:?}");
    }
    let _ = classify::host_only(path);

    let Ok(t) = PathTemplate::parse(tpl) else {
        return;
    };
    assert_eq!(PathTemplate::parse(t.as_str()).as_ref(), Ok(&t));
    assert!(t.covers(&t));
    let matched = t.matches(&segs);
    assert_eq!(matched.is_some(), t.explain(&segs).is_ok());
    if let Some(params) = &matched {
        assert_eq!(params.len(), t.params().count());
        for (name, value) in params {
            assert!(t.has_param(name));
            assert!(segs.contains(value));
        }
    }
    if let Ok(o) = PathTemplate::parse(other) {
        if t.covers(&o) && o.matches(&segs).is_some() {
            assert!(matched.is_some(), "{t} covers {o} but misses {path:?}");
        }
        for probe in [&segs, &normalize(other)] {
            if t.covers(&o) && o.matches(probe).is_some() {
                assert!(
                    t.matches(probe).is_some(),
                    "{t} covers {o} but misses {probe:?}"
                );
            }
        }
    }
});
