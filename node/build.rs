//! Records when keywardd was built: the guardian refuses to trust a clock
//! earlier than that (see `clock::build_time`).

use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let ms = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000))
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=KEYWARD_BUILD_MS={ms}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}
