//! Fuzzes the nats-server configuration reader (`bus_embedded_server::conf`):
//! the input, as UTF-8 (lossy), is parsed with no environment variables and
//! an origin in an empty temporary directory (so relative `include`s find
//! nothing), then read into a `ServerConf`. Only checks that nothing panics
//! (hangs are caught by libFuzzer's `-timeout`, stack exhaustion and runaway
//! allocation by its crash and `-rss_limit_mb` handling).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bus_embedded_server::conf;
use libfuzzer_sys::fuzz_target;

/// `<tmp>/bus-embedded-server-conf-fuzz-<pid>/fuzz.conf`; the directory is
/// created empty and the file itself does not exist.
fn origin() -> &'static Path {
    static ORIGIN: OnceLock<PathBuf> = OnceLock::new();
    ORIGIN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!(
            "bus-embedded-server-conf-fuzz-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create the fuzzing temp dir");
        dir.join("fuzz.conf")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let env = |_: &str| -> Option<String> { None };
    match conf::parse(&text, origin(), &env) {
        Ok(root) => match conf::server_conf(&root) {
            Ok((_conf, warnings)) => {
                for w in &warnings {
                    let _ = format!("{w:?}");
                }
            }
            // Error messages are built from the input too: render them.
            Err(e) => {
                let _ = e.to_string();
            }
        },
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
