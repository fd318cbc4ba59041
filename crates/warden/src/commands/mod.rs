//! One module per command.

mod audit;
mod backup;
mod init;
mod keys;
mod org;
mod reindex;
mod restore;
mod serve;

use tracing_subscriber::EnvFilter;

use crate::cli::{
    AuditCommand, Command, EnvironmentArg, KeysCommand, LogFormat, OrgCommand, PlanArg,
};
use warden_core::org::{Organization, Plan, RateLimit};
use warden_core::Environment;

pub async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Serve(args) => serve::run(args).await,
        Command::Init(args) => init::run(args).await,
        Command::Org(OrgCommand::Create(args)) => org::create(args).await,
        Command::Org(OrgCommand::List(args)) => org::list(args).await,
        Command::Org(OrgCommand::Update(args)) => org::update(args).await,
        Command::Keys(KeysCommand::List(args)) => keys::list(args).await,
        Command::Keys(KeysCommand::Create(args)) => keys::create(args).await,
        Command::Keys(KeysCommand::Revoke(args)) => keys::revoke(args).await,
        Command::Keys(KeysCommand::Rotate(args)) => keys::rotate(args).await,
        Command::Reindex(args) => reindex::run(args).await,
        Command::Backup(args) => backup::run(args).await,
        Command::Restore(args) => restore::run(args).await,
        Command::Audit(AuditCommand::Seal(args)) => audit::seal(args).await,
    }
}

/// Logs go to standard error, so that `--json` output on standard output
/// stays one clean document. `RUST_LOG` overrides the default `info`, or
/// `error` for a command asked for JSON: its standard error is then its
/// error alone, one JSON object (a slow statement's or a file mode's
/// warning left out).
/// sqlx's parser of connection strings warns of a parameter it does not
/// know with its value (`sslpassword=…`): kept to errors whatever
/// `RUST_LOG` says, so that a secret in `--database-url` is never shown.
pub fn init_logging(format: LogFormat, json: bool) {
    let default = if json { "error" } else { "info,sqlx=warn" };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default))
        .add_directive(
            "sqlx_postgres::options=error"
                .parse()
                .expect("a fixed directive parses"),
        );
    // A log line standard error cannot take (a full disk, a reader gone)
    // is dropped: reporting it would write to standard error again, and
    // a server must not stop over its log.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

/// A custom rate limit from its two flags, which go together.
pub fn custom_limit(
    per_minute: Option<u32>,
    burst: Option<u32>,
) -> Result<Option<RateLimit>, String> {
    match (per_minute, burst) {
        (None, None) => Ok(None),
        (Some(per_minute), Some(burst)) => Ok(Some(RateLimit { per_minute, burst })),
        _ => Err("--rate-limit-per-minute and --burst go together".into()),
    }
}

/// Checks an organization's settings before anything is created or
/// changed, so that a typo leaves no store or master key behind; the
/// organization they make (its id and time new).
/// `name_arg` is how the command line takes the name (`--org-name`, `NAME`),
/// named in its refusal.
pub fn check_organization(
    name: &str,
    name_arg: &str,
    plan: Plan,
    custom: Option<RateLimit>,
) -> Result<Organization, String> {
    Organization::new(name, plan, custom).map_err(|e| match &e {
        warden_core::Error::Invalid { field, message } if field == "name" => {
            format!("{name_arg}: {message}")
        }
        _ => e.to_string(),
    })
}

pub fn plan(arg: PlanArg) -> Plan {
    match arg {
        PlanArg::Starter => Plan::Starter,
        PlanArg::Professional => Plan::Professional,
        PlanArg::Enterprise => Plan::Enterprise,
        PlanArg::Custom => Plan::Custom,
    }
}

pub fn environment(arg: EnvironmentArg) -> Environment {
    match arg {
        EnvironmentArg::Live => Environment::Live,
        EnvironmentArg::Test => Environment::Test,
    }
}

/// Prints a new organization and its admin keys, once: one JSON object
/// with `--json`, else for a person.
pub fn print_tenant(
    verb: &str,
    t: &warden_server::services::bootstrap::NewTenant,
    json: bool,
    store: &crate::cli::StoreArgs,
) -> Result<(), String> {
    let text = if json {
        let doc = serde_json::json!({
            "organization_id": t.organization.id,
            "live_key": t.live_key,
            "test_key": t.test_key,
        });
        format!("{doc}\n")
    } else {
        format!(
            "{verb} organization {} ({})\n  live admin key: {}\n  test admin key: {}\n\
             These keys are shown once. Store them now.\n",
            t.organization.name, t.organization.id, t.live_key, t.test_key
        )
    };
    show_admin_keys(&text, &t.organization.id, store)
}

/// Shows a new organization's admin keys once; if they cannot be shown,
/// says how to make others, on the same store.
pub fn show_admin_keys(
    text: &str,
    org_id: &str,
    store: &crate::cli::StoreArgs,
) -> Result<(), String> {
    show_once(
        text,
        &format!("organization {org_id} was created, but its admin keys"),
        &format!(
            "make other admin keys with `warden keys create --org {org_id} --name admin --scope \
             admin{}` (and `--environment test` for the test environment's)",
            crate::store::flags(store)
        ),
    )
}

/// Writes a secret that is shown once. The change is saved by then, so a
/// write that fails (a full disk, a reader gone) is said in those words,
/// with what was saved and how to mend it, rather than lost in a panic.
pub fn show_once(text: &str, saved: &str, remedy: &str) -> Result<(), String> {
    write_out(text).map_err(|e| {
        format!(
            "{saved} could not be written to standard output ({e}); what was not shown is \
             lost: {remedy}"
        )
    })
}

/// Writes a command's answer: a standard output that cannot take it (a
/// full disk) is the command's error, after `done` (what the command did
/// all the same, and what could not be written), rather than a panic.
pub fn say(text: &str, done: &str) -> Result<(), String> {
    match write_out(text) {
        // Its reader stopped early (`| head`): the command ends quietly,
        // as other Unix tools do.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) if done.is_empty() => Err(format!("could not write to standard output ({e})")),
        Err(e) => Err(format!(
            "{done} could not be written to standard output ({e})"
        )),
        Ok(()) => Ok(()),
    }
}

/// Writes what a running server tells its operator: a standard output
/// that cannot take it is no reason to stop serving.
pub fn tell(text: &str) {
    let _ = write_out(text);
}

fn write_out(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}
