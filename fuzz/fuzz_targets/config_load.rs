//! The config loader on arbitrary text: YAML parsing, `${ENV}` substitution, typed leaves
//! (durations, sizes, templates), cross-field validation. It must return a config or
//! positioned diagnostics, never panic, hang or allocate without bound.
#![no_main]

use authtrail::classify::PathTemplate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match authtrail::config::load_str(text, "fuzz.yaml") {
        Ok(cfg) => {
            for r in &cfg.routes.routes {
                // A template reads back as itself.
                assert_eq!(PathTemplate::parse(r.path.as_str()).as_ref(), Ok(&r.path));
            }
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            for d in e.diagnostics() {
                assert!(d.line >= 1 && d.column >= 1, "{d}");
                assert_eq!(d.file, "fuzz.yaml");
            }
        }
    }
});
