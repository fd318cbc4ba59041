//! The command line. Every flag can also be set with the `WARDEN_*`
//! environment variable named in `--help`.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "warden",
    version = release(),
    about = "Warden: a self-hosted security control plane for AI agents"
)]
pub struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, env = "WARDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the state lives.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory for the embedded database, the master key file and the
    /// search index (one per process: replicas each need their own).
    #[arg(long, env = "WARDEN_DATA_DIR", default_value = "./warden-data")]
    pub data_dir: PathBuf,
    /// A postgres:// URL to use PostgreSQL instead of the embedded SQLite
    /// (its value is never shown: it may hold a password).
    #[arg(long, env = "WARDEN_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The master key (64 hex characters or base64 of 32 bytes). Without it,
    /// DATA_DIR/master.key is used, and created on first start. Replicas
    /// sharing a database must share it. Prefer the environment variable or
    /// the file: a flag's value can be read by other users in the process
    /// list.
    #[arg(long, env = "WARDEN_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PlanArg {
    Starter,
    Professional,
    Enterprise,
    Custom,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EnvironmentArg {
    Live,
    Test,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API; initializes an empty store and prints its admin keys once.
    Serve(ServeArgs),
    /// Create the schema, the first organization and one admin key per environment.
    Init(InitArgs),
    /// Manage organizations (tenants).
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage API keys from the host's console.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Rebuild this data directory's search index from the event log
    /// (stop `warden serve` first).
    Reindex(ReindexArgs),
    /// Write a consistent copy of this data directory's SQLite store to a
    /// new file, while `warden serve` runs or not (the master key is not
    /// in it: keep that apart).
    Backup(BackupArgs),
    /// Put a copy of the SQLite store (`warden backup`'s) in place of this
    /// data directory's own, removing the replaced store's WAL, then
    /// rebuild the index (stop `warden serve` first).
    Restore(RestoreArgs),
    /// The audit log's upkeep at the host's console.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Migrate a store made by a release before seals and seal its audit
    /// records, once, as the upgrade (run with the servers stopped);
    /// refused for a store sealed before.
    Seal(AuditSealArgs),
}

#[derive(Debug, Args)]
pub struct AuditSealArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print JSON instead of text.
    #[arg(long, env = "WARDEN_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

impl Command {
    /// Whether the command was asked for JSON: its error is then one JSON
    /// object too, so that a script reads either answer the same way.
    pub fn wants_json(&self) -> bool {
        match self {
            Command::Serve(_) => false,
            Command::Restore(a) => a.json,
            Command::Backup(a) => a.json,
            Command::Init(a) => a.json,
            Command::Org(OrgCommand::Create(a)) => a.json,
            Command::Org(OrgCommand::List(a)) => a.json,
            Command::Org(OrgCommand::Update(a)) => a.json,
            Command::Keys(KeysCommand::List(a)) => a.json,
            Command::Keys(KeysCommand::Create(a)) => a.json,
            Command::Keys(KeysCommand::Revoke(a)) => a.json,
            Command::Keys(KeysCommand::Rotate(a)) => a.json,
            Command::Audit(AuditCommand::Seal(a)) => a.json,
            Command::Reindex(a) => a.json,
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "WARDEN_LISTEN", default_value = "127.0.0.1:8080",
          value_parser = host_and_port)]
    pub listen: String,
    /// A redis:// URL: rate limits shared by every replica (its value is
    /// never shown: it may hold a password).
    #[arg(long, env = "WARDEN_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// What every key Warden writes in Redis starts with, so that several
    /// deployments (staging and production, say) can share one Redis.
    #[arg(long, env = "WARDEN_REDIS_KEY_PREFIX", default_value = "warden:",
          value_parser = redis_key_prefix)]
    pub redis_key_prefix: String,
    /// Proxies (CIDR) whose X-Forwarded-For is believed; repeatable or comma-separated.
    #[arg(
        long = "trusted-proxy",
        env = "WARDEN_TRUSTED_PROXY",
        value_delimiter = ',',
        value_parser = proxy_range
    )]
    pub trusted_proxies: Vec<String>,
    /// Name of the first organization, when the store is empty.
    #[arg(long, env = "WARDEN_ORG_NAME", default_value = "Default")]
    pub org_name: String,
    /// Listen for syslog (RFC 5424 and 3164) on this UDP address.
    #[arg(long, env = "WARDEN_SYSLOG_UDP", value_parser = host_and_port)]
    pub syslog_udp: Option<String>,
    /// Listen for syslog on this TCP address (newline or octet-counting framing).
    #[arg(long, env = "WARDEN_SYSLOG_TCP", value_parser = host_and_port)]
    pub syslog_tcp: Option<String>,
    /// The organization (id) whose live environment receives syslog messages
    /// that carry no `[warden@32473 token="…"]` ingest key.
    #[arg(long, env = "WARDEN_SYSLOG_ORG")]
    pub syslog_org: Option<String>,
    /// Most syslog TCP connections open at once; when all are taken, the
    /// one idle longest (5 s or more) is closed for a new one.
    #[arg(long, env = "WARDEN_SYSLOG_TCP_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub syslog_tcp_connections: u16,
    /// Seconds an HTTP client has to send a request's headers, idle time
    /// on a kept-alive connection included; a slower one is disconnected.
    /// A request body that stops arriving for as long is refused (400).
    #[arg(long, env = "WARDEN_HEADER_TIMEOUT_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub header_timeout_seconds: u16,
    /// Threads that build the search index (1 to 8; default: half the
    /// cores, one to four). They run only on time requests leave idle.
    #[arg(long, env = "WARDEN_INDEX_THREADS", value_parser = clap::value_parser!(u16).range(1..=8))]
    pub index_threads: Option<u16>,
    /// Seconds one search may take (1 to 3600); past them it stops and is
    /// answered 422 naming the limit.
    #[arg(long, env = "WARDEN_SEARCH_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u16).range(1..=3600))]
    pub search_timeout_seconds: u16,
}

#[derive(Debug, Args)]
pub struct ReindexArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print JSON instead of text.
    #[arg(long, env = "WARDEN_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The file to write: a new one (an existing file is never replaced),
    /// readable by its owner alone.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print JSON instead of text.
    #[arg(long, env = "WARDEN_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The copy to restore: a SQLite file, checked whole before anything
    /// in the data directory changes.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print JSON instead of text (the rebuilt index's report).
    #[arg(long, env = "WARDEN_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print exactly one JSON object: organization_id, live_key, test_key.
    #[arg(long, env = "WARDEN_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
    /// Name of the first organization.
    #[arg(long, env = "WARDEN_ORG_NAME", default_value = "Default")]
    pub org_name: String,
    /// The plan, which sets the rate limit (custom: with
    /// --rate-limit-per-minute and --burst).
    #[arg(long, env = "WARDEN_PLAN", value_enum, default_value_t = PlanArg::Enterprise)]
    pub plan: PlanArg,
    /// Requests per minute, with `--plan custom`.
    #[arg(long, env = "WARDEN_RATE_LIMIT_PER_MINUTE")]
    pub rate_limit_per_minute: Option<u32>,
    /// Burst allowance, with `--plan custom`.
    #[arg(long, env = "WARDEN_BURST")]
    pub burst: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization with one admin key per environment.
    Create(OrgCreateArgs),
    /// List organizations.
    List(OrgListArgs),
    /// Rename an organization or change its plan (its rate limit); running
    /// servers apply the change within a second.
    Update(OrgUpdateArgs),
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("change")
        .required(true)
        .multiple(true)
        .args(["name", "plan", "rate_limit_per_minute", "burst"])
))]
pub struct OrgUpdateArgs {
    /// The organization's id (`warden org list`).
    pub org_id: String,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
    /// A new plan (custom: with --rate-limit-per-minute and --burst, or
    /// the organization's custom limit kept).
    #[arg(long, value_enum)]
    pub plan: Option<PlanArg>,
    /// Requests per minute, with the custom plan.
    #[arg(long)]
    pub rate_limit_per_minute: Option<u32>,
    /// Burst allowance, with the custom plan.
    #[arg(long)]
    pub burst: Option<u32>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print JSON instead of text.
    #[arg(long, env = "WARDEN_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OrgCreateArgs {
    /// The organization's name.
    pub name: String,
    /// The plan, which sets the rate limit (custom: with
    /// --rate-limit-per-minute and --burst).
    #[arg(long, env = "WARDEN_PLAN", value_enum, default_value_t = PlanArg::Starter)]
    pub plan: PlanArg,
    /// Requests per minute, with `--plan custom`.
    #[arg(long, env = "WARDEN_RATE_LIMIT_PER_MINUTE")]
    pub rate_limit_per_minute: Option<u32>,
    /// Burst allowance, with `--plan custom`.
    #[arg(long, env = "WARDEN_BURST")]
    pub burst: Option<u32>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print JSON instead of text.
    #[arg(long, env = "WARDEN_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OrgListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print JSON instead of text.
    #[arg(long, env = "WARDEN_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List an organization's keys (never their secrets).
    List(KeysListArgs),
    /// Create a key; its secret is printed once.
    Create(KeysCreateArgs),
    /// Revoke a key by id.
    Revoke(KeysRevokeArgs),
    /// Give a key a new secret, printed once; the old secret works on for
    /// the grace period (0, the default, ends it at once).
    Rotate(KeysRotateArgs),
}

#[derive(Debug, Args)]
pub struct KeysListArgs {
    /// The organization's id (`warden org list`).
    #[arg(long, env = "WARDEN_ORG")]
    pub org: String,
    /// The environment: live or test.
    #[arg(long, env = "WARDEN_ENVIRONMENT", value_enum, default_value_t = EnvironmentArg::Live)]
    pub environment: EnvironmentArg,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print JSON instead of text.
    #[arg(long, env = "WARDEN_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeysCreateArgs {
    /// The organization's id (`warden org list`).
    #[arg(long, env = "WARDEN_ORG")]
    pub org: String,
    /// The key's name, shown in listings.
    #[arg(long, env = "WARDEN_KEY_NAME")]
    pub name: String,
    /// Scopes, repeatable or comma-separated (e.g. agents.read,enforce).
    #[arg(
        long = "scope",
        env = "WARDEN_SCOPES",
        value_delimiter = ',',
        required = true
    )]
    pub scopes: Vec<String>,
    /// The environment: live or test.
    #[arg(long, env = "WARDEN_ENVIRONMENT", value_enum, default_value_t = EnvironmentArg::Live)]
    pub environment: EnvironmentArg,
    /// RFC 3339 expiry.
    #[arg(long, env = "WARDEN_EXPIRES_AT", value_parser = rfc3339_time)]
    pub expires_at: Option<String>,
    /// Bind the key to one agent.
    #[arg(long, env = "WARDEN_AGENT_ID")]
    pub agent_id: Option<String>,
    /// Allowed client ranges, repeatable or comma-separated.
    #[arg(
        long = "allowed-cidr",
        env = "WARDEN_ALLOWED_CIDRS",
        value_delimiter = ',',
        value_parser = cidr_range
    )]
    pub allowed_cidrs: Vec<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print JSON instead of text.
    #[arg(long, env = "WARDEN_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeysRevokeArgs {
    /// The key's id (`key_…`, from `warden keys list`).
    pub key_id: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print JSON instead of text.
    #[arg(long, env = "WARDEN_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeysRotateArgs {
    /// The key's id (`key_…`, from `warden keys list`).
    pub key_id: String,
    /// Seconds the old secret keeps working (at most 604800, a week).
    #[arg(long, env = "WARDEN_GRACE_PERIOD_SECONDS", default_value_t = 0)]
    pub grace_period_seconds: u32,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print JSON instead of text.
    #[arg(long, env = "WARDEN_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

/// An address to listen on, `HOST:PORT` (an IP address, IPv6 in
/// brackets, or a name): a malformed one is a usage error (exit 2) before
/// anything is made, not a failure to listen.
fn host_and_port(text: &str) -> Result<String, String> {
    if text.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(text.to_string());
    }
    match text.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && !host.contains(':')
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok() =>
        {
            Ok(text.to_string())
        }
        _ => Err("expected HOST:PORT, such as 127.0.0.1:8080 or [::1]:8080".into()),
    }
}

/// A proxy range, `10.0.0.0/8` or one address; an empty entry (a trailing
/// comma) is skipped later.
fn proxy_range(text: &str) -> Result<String, String> {
    if text.trim().is_empty() || warden_core::api_key::parse_cidr(text).is_some() {
        Ok(text.to_string())
    } else {
        Err("expected a CIDR range such as 10.0.0.0/8, or an address".into())
    }
}

/// The release, the commit it was built from and the schema versions it
/// brings a store to: two builds of one version number are told apart.
fn release() -> &'static str {
    static RELEASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RELEASE.get_or_init(|| {
        use warden_store::{schema_version, Backend};
        format!(
            "{} (commit {}; schema: SQLite {}, PostgreSQL {})",
            env!("CARGO_PKG_VERSION"),
            warden_server::COMMIT,
            schema_version(Backend::Sqlite),
            schema_version(Backend::Postgres)
        )
    })
}

/// A client range a key is allowed from.
fn cidr_range(text: &str) -> Result<String, String> {
    match warden_core::api_key::parse_cidr(text) {
        Some(_) => Ok(text.to_string()),
        None => Err("expected a CIDR range such as 10.0.0.0/8, or an address".into()),
    }
}

/// An RFC 3339 time, such as 2030-01-01T00:00:00Z.
fn rfc3339_time(text: &str) -> Result<String, String> {
    match warden_core::time::parse_rfc3339(text) {
        Some(_) => Ok(text.to_string()),
        None => Err("expected an RFC 3339 time such as 2030-01-01T00:00:00Z".into()),
    }
}

/// A Redis key prefix: 1 to 64 visible ASCII characters.
fn redis_key_prefix(text: &str) -> Result<String, String> {
    if (1..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(text.to_string())
    } else {
        Err("a prefix is 1 to 64 visible ASCII characters (no spaces)".into())
    }
}
