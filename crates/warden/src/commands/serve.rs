//! `warden serve`: initialize an empty store (printing its admin keys once),
//! then serve until SIGTERM or SIGINT, finishing in-flight requests.

use warden_core::api_key::parse_cidr;
use warden_core::org::Plan;
use warden_server::services::{bootstrap, secrets};
use warden_server::{Server, ServerConfig, SyslogConfig};

use crate::cli::ServeArgs;

pub async fn run(args: ServeArgs) -> Result<(), String> {
    let trusted_proxies = args
        .trusted_proxies
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_cidr(s).ok_or_else(|| format!("--trusted-proxy: `{s}` is not a CIDR range")))
        .collect::<Result<Vec<_>, _>>()?;
    // Checked before the store is made: a bad name must leave nothing behind.
    super::check_organization(&args.org_name, "--org-name", Plan::Enterprise, None)?;
    // Held until the server stops, from before the store is opened (and
    // perhaps migrated or made). A directory this start made is taken away
    // again if the start fails while it is still empty, under the lock:
    // a start refused for the lock removes nothing (another process may
    // have made the directory at the same moment, and holds it).
    let data_dir = args.store.data_dir.clone();
    let made = !data_dir.exists();
    warden_store::create_private_dir(&data_dir).map_err(|e| e.to_string())?;
    let running = crate::data_dir_lock::hold(&data_dir)?;
    let served = serve(args, trusted_proxies).await;
    if served.is_err() && made {
        running.remove_if_empty(&data_dir);
    }
    drop(running);
    served
}

async fn serve(args: ServeArgs, trusted_proxies: Vec<ipnet::IpNet>) -> Result<(), String> {
    // A start that cannot listen fails before the store is opened: on an
    // empty directory it then makes no store and no master key, and the
    // keys of a new store, shown once, are never made for a server that
    // cannot run.
    can_listen(&args)?;
    let opened = crate::store::open(&args.store, crate::store::Opening::Serve).await?;
    let store = opened.store.clone();
    let initialized = store.is_initialized().await.map_err(|e| e.to_string())?;
    if !initialized && args.syslog_org.is_some() {
        // The first organization's id is made at initialization: no id
        // given before can name it, and failing after would lose the keys
        // shown once. Refused before the master key is bound to the store,
        // so a later start may still bring its own.
        return Err(
            "--syslog-org: the store is empty, so no organization exists yet; start once \
             without --syslog-org (or run `warden init`) and use the organization id it prints"
                .into(),
        );
    }
    secrets::verify_master_key(store.as_ref(), &opened.master).await?;
    let first = if initialized {
        None
    } else {
        bootstrap::initialize(
            store.as_ref(),
            &opened.master.key_pepper(),
            &args.org_name,
            Plan::Enterprise,
            None,
        )
        .await
        .map_err(|e| e.to_string())?
    };
    // Shown as soon as they exist: a start that fails after this (a
    // refused Redis URL, an address taken since the check) must not lose
    // the keys shown once.
    if let Some(tenant) = &first {
        super::show_admin_keys(
            &format!(
                "Warden initialized a new store with organization {} ({}).\n\
                 Admin keys, shown once; store them now:\n  live: {}\n  test: {}\n\n",
                tenant.organization.name, tenant.organization.id, tenant.live_key, tenant.test_key
            ),
            &tenant.organization.id,
            &args.store,
        )?;
    }
    let config = ServerConfig {
        listen: args.listen.clone(),
        redis_url: args.redis_url.clone(),
        redis_key_prefix: args.redis_key_prefix.clone(),
        trusted_proxies,
        index_dir: args.store.data_dir.join("index"),
        index_threads: args
            .index_threads
            .map_or_else(warden_search::default_writer_threads, usize::from),
        syslog: SyslogConfig {
            udp: args.syslog_udp.clone(),
            tcp: args.syslog_tcp.clone(),
            org_id: args.syslog_org.clone(),
            tcp_connections: args.syslog_tcp_connections.into(),
        },
        header_timeout: std::time::Duration::from_secs(args.header_timeout_seconds.into()),
        search_time_limit: std::time::Duration::from_secs(args.search_timeout_seconds.into()),
    };
    let shutdown = shutdown_signal();
    let mut server = Server::build(store.clone(), &opened.master, config).await?;
    if let Some(listeners) = server.start_syslog().await? {
        if let Some(addr) = listeners.udp {
            super::tell(&format!("Syslog (UDP) on {addr}\n"));
        }
        if let Some(addr) = listeners.tcp {
            super::tell(&format!("Syslog (TCP) on {addr}\n"));
        }
        if args.syslog_org.is_none() {
            // Without it a message with no ingest key in its structured
            // data has no organization: it is counted and dropped.
            super::tell(
                "Syslog without --syslog-org: only messages carrying [warden@32473 token=\"…\"] \
                 are kept; the others are dropped (warden_syslog_messages_total{outcome=\"unrouted\"})\n",
            );
            tracing::warn!(
                "syslog listeners have no --syslog-org: messages without an ingest key are dropped"
            );
        }
    } else if args.syslog_org.is_some() {
        super::tell("--syslog-org has no effect without --syslog-udp or --syslog-tcp\n");
        tracing::warn!("--syslog-org given without a syslog listener: it has no effect");
    }
    let address = server
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(args.listen);
    super::tell(&format!(
        "Warden is listening on http://{address}\nAPI reference: http://{address}/docs\n"
    ));
    tracing::info!(%address, backend = store.backend().as_str(), "serving");
    server.run(shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled: called before the server
/// says it is listening, a signal sent the moment it does is a shutdown,
/// not the default action that kills the process unclean.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (terminate, interrupt) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(terminate) => {},
                () = wait(interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}

/// Binds, then lets go of, every address `serve` listens on, so that an
/// address in use is found before a new store's one-time keys are made.
/// (Another process could still take one in between; the server's own
/// bind then fails as usual, after the keys were shown.)
/// All are held until the last is bound, so that two of Warden's own
/// addresses on one port (`--listen` and `--syslog-tcp`) are found too.
fn can_listen(args: &ServeArgs) -> Result<(), String> {
    let _http = std::net::TcpListener::bind(&args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let _tcp = match &args.syslog_tcp {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr)
                .map_err(|e| format!("cannot listen for syslog on tcp {addr}: {e}"))?,
        ),
        None => None,
    };
    if let Some(addr) = &args.syslog_udp {
        std::net::UdpSocket::bind(addr)
            .map_err(|e| format!("cannot listen for syslog on udp {addr}: {e}"))?;
    }
    Ok(())
}
