//! keywardd: the keyward node daemon.

use std::path::PathBuf;

use clap::Parser;
use keyward_node::config::{Config, DEFAULT_PATH};
use keyward_node::daemon::Daemon;

#[derive(Parser)]
#[command(
    version,
    about = "keyward node daemon: guards peers' disk-key shares and proves this node alive"
)]
struct Args {
    /// Config file.
    #[arg(long, env = "KEYWARD_CONFIG", default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// State directory (node key, database); overrides the config's
    /// `state_dir`. Give `keyward` the same one.
    #[arg(long, env = "KEYWARD_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let cfg = match Config::load(&args.config) {
        Ok(mut c) => {
            if let Some(d) = args.state_dir {
                c.state_dir = d;
            }
            c
        }
        Err(e) => {
            eprintln!("keywardd: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{},libp2p=warn", cfg.log_level))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keywardd: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(async {
        let d = Daemon::new(cfg)?;
        d.run().await
    });
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keywardd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
