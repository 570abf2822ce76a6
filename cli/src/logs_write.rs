//! `keyward logs write --source NAME`: stdin's lines into a pipe source of
//! this node's keywardd (Apache: `CustomLog "|/usr/bin/keyward logs write
//! --source apache" combined`). Exits 0 only once keywardd confirmed every
//! line durable; otherwise non-zero with keywardd's reason.

use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use keyward_node::config::Config;

#[derive(Args)]
pub struct WriteArgs {
    /// The source's name, a `kind = "pipe"` source of `[[logs.source]]`.
    #[arg(long)]
    pub source: String,
    /// keywardd's pipe socket (default: the config's `logs.pipe_socket`).
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

pub fn write(cfg: &Config, a: &WriteArgs) -> anyhow::Result<()> {
    let socket = a
        .socket
        .clone()
        .unwrap_or_else(|| cfg.logs.pipe_socket.clone());
    // stdin as a tokio file (reads on the blocking pool): works for pipes
    // and files without tokio's io-std feature.
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("stdin")?;
    let stdin = tokio::fs::File::from_std(std::fs::File::from(fd));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(keyward_node::logs::listen::pipe::write(
        &socket, &a.source, stdin,
    ))?;
    Ok(())
}
