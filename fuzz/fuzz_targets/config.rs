//! Config files: any text parses to a Config or a ConfigError naming a line within the text.
#![no_main]

use imgate::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.toml") {
        Ok(cfg) => {
            let _ = cfg.file_name();
            for app in &cfg.apps {
                let _ = app.policy();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
