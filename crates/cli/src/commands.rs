//! Command dispatch and the read-only commands.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bacalhau_api::Client;
use bacalhau_model::{
    Execution, Job, JobId, Resources, SubmissionDefaults, fmt_bytes, fmt_cpu, parse_job_spec, prepare_submission,
};

use crate::args::{
    AgentCommand, Cli, Command, DescribeArgs, DockerCommand, Format, HistoryArgs, IdOutputArgs, JobCommand, JobRunArgs,
    LegacyListArgs, ListArgs, LogsArgs, NodeCommand, OutputArgs, RerunArgs, StopArgs, ValidateArgs, WasmCommand,
};
use crate::output::{clock, datetime, print_list, print_object, rfc_clock};
use crate::{jobspec, results, serve, wait};

/// Runs one command.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "bacalhau", &mut out);
            write_stdout(&out)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match dir {
                Some(d) => {
                    std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
                    clap_mangen::generate_to(cmd, d)
                        .with_context(|| format!("cannot write pages into {}", d.display()))?;
                }
                None => {
                    let mut out = Vec::new();
                    clap_mangen::Man::new(cmd).render(&mut out)?;
                    write_stdout(&out)?;
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    // The log flags are settings given last, so they win over files, variables and -c.
    let mut config = cli.config.clone();
    if let Some(level) = &cli.log_level {
        config.push(format!("Logging.Level={level}"));
    }
    if let Some(format) = &cli.log_format {
        let mode = if format.trim().eq_ignore_ascii_case("text") { "default" } else { format.as_str() };
        config.push(format!("Logging.Mode={mode}"));
    }
    let sources = crate::config::Sources { config, data_dir: cli.data_dir.clone() };
    if let Command::Config(cmd) = &cli.command {
        return config_command(&sources, cmd).map(|()| ExitCode::SUCCESS);
    }
    let cfg = crate::config::Config::load(&sources)?;
    let data_dir = cfg.data_dir();
    if let Command::Profile(cmd) = &cli.command {
        return profile_command(&data_dir, cmd).map(|()| ExitCode::SUCCESS);
    }
    let api_port = match cli.api_port {
        Some(p) => p,
        None => {
            let p = cfg.int("API.Port");
            u16::try_from(p).with_context(|| format!("API.Port {p} is not a port number"))?
        }
    };
    let api_host = cli.api_host.clone().unwrap_or_else(|| cfg.str("API.Host"));
    let client = if matches!(
        cli.command,
        Command::Serve(_) | Command::Devstack(_) | Command::Auth(crate::args::AuthCommand::HashPassword)
    ) {
        Client::new(&api_host, api_port)
    } else {
        // A profile gives the endpoint unless --api-host/--api-port (their environment
        // variables, or a config setting) name another, and its token unless the environment
        // has credentials.
        let profile = crate::profile::selected(&data_dir, cli.profile.as_deref())?.map(|(_, p)| p);
        let address_given =
            cli.api_host.is_some() || cli.api_port.is_some() || cfg.is_set("API.Host") || cfg.is_set("API.Port");
        let (host, port) = match &profile {
            Some(p) if !address_given => (p.endpoint.clone(), api_port),
            _ => (api_host.clone(), api_port),
        };
        let insecure = cli.insecure
            || cfg.bool("API.TLS.Insecure")
            || profile.as_ref().and_then(|p| p.tls.as_ref()).is_some_and(|t| t.insecure);
        let tls_ca = cli.tls_ca.clone().or_else(|| cfg.opt_str("API.TLS.CAFile").map(Into::into));
        let authorization = match crate::auth::authorization_from_env()? {
            Some(a) => Some(a),
            None => profile
                .as_ref()
                .and_then(|p| p.auth.as_ref())
                .map(|a| a.token.trim().to_owned())
                .filter(|t| !t.is_empty())
                .map(|t| format!("Bearer {t}")),
        };
        let trust = match (&tls_ca, insecure) {
            (_, true) => bacalhau_api::tls::ClientTrust::Insecure,
            (Some(ca), false) => bacalhau_api::tls::ClientTrust::Ca(
                std::fs::read(ca).with_context(|| format!("cannot read --tls-ca {}", ca.display()))?,
            ),
            (None, false) => bacalhau_api::tls::ClientTrust::Default,
        };
        let https = cli.tls || cfg.bool("API.TLS.UseTLS") || !matches!(trust, bacalhau_api::tls::ClientTrust::Default);
        Client::connect(&host, port, https, &trust, authorization)?
    };
    match cli.command {
        Command::Serve(args) => {
            let _telemetry = init_logging(&cfg)?;
            serve::serve(&api_host, api_port, cli.tls_ca, args, &cfg).await?;
        }
        Command::Devstack(args) => {
            let _telemetry = init_logging(&cfg)?;
            crate::devstack::run(&api_host, api_port, cli.data_dir, args, &cfg).await?;
        }
        Command::Docker(DockerCommand::Run(args)) => {
            let job = jobspec::docker_job(&args)?;
            return wait::submit_and_wait(&client, &job, &args.runtime, false).await;
        }
        Command::Wasm(WasmCommand::Run(args)) => {
            let job = jobspec::wasm_job(&args)?;
            return wait::submit_and_wait(&client, &job, &args.runtime, false).await;
        }
        Command::Job(cmd) => return job_command(&client, cmd).await,
        Command::Ipfs(cmd) => crate::ipfs::run(&client, &data_dir, cmd).await?,
        Command::Node(NodeCommand::List(out)) => node_list(&client, &out).await?,
        Command::Node(NodeCommand::Approve(a)) => node_action(&client, "approve", &a).await?,
        Command::Node(NodeCommand::Reject(a)) => node_action(&client, "reject", &a).await?,
        Command::Node(NodeCommand::Delete(a)) => node_action(&client, "delete", &a).await?,
        Command::Node(NodeCommand::Describe(args)) => {
            let node = client.node(&args.id).await?;
            print_object(args.output.unwrap_or(Format::Yaml), &node)?;
        }
        Command::Agent(AgentCommand::Alive(o)) => print_object(o.output, &client.alive().await?)?,
        Command::Agent(AgentCommand::Version(o)) => print_object(o.output, &client.version().await?)?,
        Command::Agent(AgentCommand::Node(o)) => print_object(o.output, &client.agent_node().await?)?,
        Command::Version(o) => version(&client, &o).await?,
        Command::Auth(crate::args::AuthCommand::Info) => crate::auth::info(&client).await?,
        Command::Auth(crate::args::AuthCommand::HashPassword) => crate::auth::hash_password()?,
        Command::Profile(_) | Command::Config(_) | Command::Completion { .. } | Command::Man { .. } => {
            unreachable!("handled before a client is made")
        }
        Command::List(args) => legacy_list(&client, &args).await?,
        Command::Describe(args) => describe(&client, &args).await?,
        Command::Get(args) => get(&client, &args).await?,
        Command::Logs(args) => logs(&client, &args).await?,
        Command::Cancel(args) => stop(&client, &args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

/// Logs to stderr at `Logging.Level` (`BACALHAU_LOG` takes a full tracing filter), as text or,
/// with `Logging.Mode: json`, one JSON object per line; exports the node's spans and metrics
/// over OTLP when a collector is configured (the returned exporters send their last batches
/// when dropped).
fn init_logging(
    cfg: &crate::config::Config,
) -> Result<(Option<crate::telemetry::Telemetry>, Option<crate::telemetry::MetricsTelemetry>)> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let level = cfg.str("Logging.Level").trim().to_ascii_lowercase();
    let level = match level.as_str() {
        "trace" | "debug" | "info" | "warn" | "error" => level,
        "fatal" | "panic" => "error".to_owned(),
        other => bail!("Logging.Level {other:?} is not a level: use trace, debug, info, warn or error"),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BACALHAU_LOG").unwrap_or_else(|_| level.into());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match cfg.str("Logging.Mode").trim().to_ascii_lowercase().as_str() {
        "json" => fmt.json().boxed(),
        "default" | "cmd" | "text" | "" => fmt.boxed(),
        other => bail!("Logging.Mode {other:?} is not a mode: use default (text) or json (--log-format text|json)"),
    };
    let (otel, telemetry) = if crate::telemetry::enabled() {
        let (tracer, telemetry) = crate::telemetry::tracer()?;
        // Our own spans (a job's submission, placement, execution and its phases), not the
        // libraries' (the exporter's own HTTP client among them).
        let ours = tracing_subscriber::filter::Targets::new()
            .with_target("bacalhau_api", tracing::Level::INFO)
            .with_target("bacalhau_orchestrator", tracing::Level::INFO)
            .with_target("bacalhau_compute", tracing::Level::INFO);
        (Some(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(ours)), Some(telemetry))
    } else {
        (None, None)
    };
    let _ = tracing_subscriber::registry().with(fmt.with_filter(filter)).with(otel).try_init();
    // Before the node starts recording: metrics recorded without the recorder are lost.
    let metrics = if crate::telemetry::metrics_enabled() {
        let (recorder, exporter) = crate::telemetry::otlp_recorder()?;
        bacalhau_api::metrics::install(Some(Box::new(recorder)));
        Some(exporter)
    } else {
        None
    };
    Ok((telemetry, metrics))
}

/// `bacalhau config list|set|default`.
fn config_command(sources: &crate::config::Sources, cmd: &crate::args::ConfigCommand) -> Result<()> {
    use crate::args::ConfigCommand;
    match cmd {
        ConfigCommand::List(out) => {
            let cfg = crate::config::Config::load(sources)?;
            let entries = cfg.entries();
            let rows = entries
                .iter()
                .map(|(k, v)| {
                    let help = if k.used { k.help.to_owned() } else { format!("{} (accepted, not used here)", k.help) };
                    vec![k.path.to_owned(), v.display(), help]
                })
                .collect();
            #[derive(serde::Serialize)]
            #[serde(rename_all = "PascalCase")]
            struct Row {
                key: &'static str,
                value: serde_json::Value,
                description: &'static str,
            }
            if out.output == Format::Yaml {
                print!("{}", yaml_serde::to_string(&cfg.to_tree())?);
                return Ok(());
            }
            let raw: Vec<Row> = entries
                .iter()
                .map(|(k, v)| Row { key: k.path, value: serde_json::Value::String(v.display()), description: k.help })
                .collect();
            print_list(out, &["Key", "Value", "Description"], rows, &raw)
        }
        ConfigCommand::Set { args } => {
            // The file to write: the one -c names, else $BACALHAU_DIR/config.yaml.
            let files: Vec<&String> =
                sources.config.iter().filter(|c| c.ends_with(".yaml") || c.ends_with(".yml")).collect();
            let file = match files.as_slice() {
                [] => crate::config::Config::load(sources)?.data_dir().join("config.yaml"),
                [one] => std::path::PathBuf::from(one),
                _ => bail!("config set writes one file: give at most one -c FILE.yaml"),
            };
            crate::config::set(&file, args)
        }
        ConfigCommand::Default => {
            let defaults = crate::config::Config::default();
            print!("{}", yaml_serde::to_string(&defaults.to_tree())?);
            Ok(())
        }
    }
}

async fn job_command(client: &Client, cmd: JobCommand) -> Result<ExitCode> {
    match cmd {
        JobCommand::Run(args) => return job_run(client, &args).await,
        JobCommand::List(args) => job_list(client, &args).await?,
        JobCommand::Describe(args) => describe(client, &args).await?,
        JobCommand::Executions(args) => executions(client, &args).await?,
        JobCommand::History(args) => history(client, &args).await?,
        JobCommand::Logs(args) => logs(client, &args).await?,
        JobCommand::Stop(args) => stop(client, &args).await?,
        JobCommand::Get(args) => get(client, &args).await?,
        JobCommand::Validate(args) => validate(&args)?,
        JobCommand::Rerun(args) => return rerun(client, &args).await,
        JobCommand::Versions(args) => versions(client, &args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn read_spec(file: Option<&std::path::Path>) -> Result<(String, String)> {
    match file {
        None => read_stdin(),
        Some(p) if p.as_os_str() == "-" => read_stdin(),
        Some(p) => Ok((
            std::fs::read_to_string(p).with_context(|| format!("cannot read the job spec {}", p.display()))?,
            p.display().to_string(),
        )),
    }
}

fn read_stdin() -> Result<(String, String)> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).context("cannot read the job spec from stdin")?;
    Ok((s, "stdin".into()))
}

/// Parses a spec file strictly: unknown and server-owned keys are errors.
fn load_spec(text: &str, source: &str) -> Result<Job> {
    let parsed = parse_job_spec(text).with_context(|| format!("in {source}"))?;
    if !parsed.unknown_keys.is_empty() {
        bail!(
            "in {source}: unknown field(s) {}: check the spelling against Bacalhau's job spec",
            parsed.unknown_keys.join(", ")
        );
    }
    let value: serde_json::Value =
        if text.trim_start().starts_with('{') { serde_json::from_str(text)? } else { yaml_serde::from_str(text)? };
    if let Some(map) = value.as_object() {
        let owned: Vec<&str> = bacalhau_model::SERVER_OWNED_FIELDS
            .iter()
            .copied()
            .filter(|k| map.keys().any(|m| m.eq_ignore_ascii_case(k)))
            .collect();
        if !owned.is_empty() {
            bail!(
                "in {source}: {} set by the server; remove them from the spec",
                owned.join(", ") + if owned.len() > 1 { " are" } else { " is" }
            );
        }
    }
    Ok(parsed.job)
}

async fn job_run(client: &Client, args: &JobRunArgs) -> Result<ExitCode> {
    let (text, source) = read_spec(args.file.as_deref())?;
    let job = load_spec(&text, &source)?;
    wait::submit_and_wait(client, &job, &args.runtime, args.force).await
}

async fn rerun(client: &Client, args: &RerunArgs) -> Result<ExitCode> {
    let resp = client.rerun(&args.id, args.version, &args.reason).await?;
    if !args.track.id_only {
        eprintln!("Job {} is rerun as version {}.", resp.job_id, resp.job_version);
    }
    wait::track(client, &resp.job_id, &resp.warnings, &args.track).await
}

async fn versions(client: &Client, args: &IdOutputArgs) -> Result<()> {
    let page = client.versions(&args.id).await?;
    let rows = page
        .items
        .iter()
        .map(|j| vec![datetime(j.modify_time), j.version.max(1).to_string(), j.state.state_type.to_string()])
        .collect();
    print_list(&args.output, &["created at", "job version", "state"], rows, &page.items)
}

fn validate(args: &ValidateArgs) -> Result<()> {
    let (text, source) = read_spec(Some(&args.file))?;
    let job = load_spec(&text, &source)?;
    prepare_submission(job, JobId::from("j-validate"), 0, &SubmissionDefaults::default())
        .map_err(|e| anyhow::anyhow!("{source} is not a valid job: {e}"))?;
    println!("The job spec in {source} is valid.");
    Ok(())
}

fn job_summary(j: &Job) -> String {
    j.task().map_or_else(String::new, |t| format!("{} {}", t.engine.type_name(), j.r#type))
}

fn job_rows(jobs: &[Job]) -> Vec<Vec<String>> {
    jobs.iter()
        .map(|j| {
            vec![
                datetime(j.create_time),
                j.id.short().to_owned(),
                j.name.clone(),
                job_summary(j),
                j.r#type.to_string(),
                j.state.state_type.to_string(),
            ]
        })
        .collect()
}

async fn job_list(client: &Client, args: &ListArgs) -> Result<()> {
    let page = client.list_jobs(args.limit, &args.next_token, !args.order_reversed, &args.labels).await?;
    print_list(&args.output, &["created", "id", "name", "job", "type", "state"], job_rows(&page.items), &page.items)?;
    if !page.next_token.is_empty() && args.output.output == Format::Table {
        println!("\nTo fetch more records use:\n\tbacalhau job list --next-token {}", page.next_token);
    }
    Ok(())
}

async fn legacy_list(client: &Client, args: &LegacyListArgs) -> Result<()> {
    let jobs = match args.id_filter.as_deref().filter(|f| !f.is_empty()) {
        Some(id) => vec![client.get_job(id, "").await?.job],
        None => client.list_jobs(args.number, "", true, "").await?.items,
    };
    print_list(&args.output, &["created", "id", "name", "job", "type", "state"], job_rows(&jobs), &jobs)
}

fn exec_rows(execs: &[Execution]) -> Vec<Vec<String>> {
    execs
        .iter()
        .map(|e| {
            vec![
                datetime(e.create_time),
                clock(e.modify_time),
                e.id.short().to_owned(),
                e.node_id.to_string(),
                e.revision.to_string(),
                e.compute_state.state_type.name().to_owned(),
                e.desired_state.state_type.name().to_owned(),
                e.quote.map_or_else(|| "-".to_owned(), price),
                e.cost.map_or_else(|| "-".to_owned(), price),
                match (&e.verification, e.compute_state.message.as_str()) {
                    (Some(v), m) if !m.is_empty() => format!("{m}; {v}"),
                    (Some(v), _) => v.clone(),
                    (None, m) => m.to_owned(),
                },
            ]
        })
        .collect()
}

/// A price for humans: enough digits for small per-second prices.
fn price(p: f64) -> String {
    format!("{p:.6}").trim_end_matches('0').trim_end_matches('.').to_owned()
}

const EXEC_HEADERS: [&str; 10] =
    ["created", "modified", "id", "node id", "rev.", "state", "desired", "quote", "cost", "comment"];

async fn executions(client: &Client, args: &IdOutputArgs) -> Result<()> {
    let page = client.executions(&args.id).await?;
    print_list(&args.output, &EXEC_HEADERS, exec_rows(&page.items), &page.items)
}

async fn history(client: &Client, args: &HistoryArgs) -> Result<()> {
    let page = client.history(&args.id, &args.event_type, &args.execution_id, "").await?;
    let rows = page
        .items
        .iter()
        .map(|h| {
            vec![
                rfc_clock(&h.time),
                format!("{:?}", h.r#type).replace("Level", ""),
                h.execution_id.short().to_owned(),
                h.event.topic.clone(),
                h.event.message.clone(),
            ]
        })
        .collect();
    print_list(&args.output, &["time", "level", "exec. id", "topic", "event"], rows, &page.items)
}

async fn describe(client: &Client, args: &DescribeArgs) -> Result<()> {
    let resp = client.get_job_version(&args.id, "history,executions", args.version).await?;
    if let Some(format) = args.output {
        return print_object(format, &resp);
    }
    let job = &resp.job;
    let execs = resp.executions.map(|p| p.items).unwrap_or_default();
    let history = resp.history.map(|p| p.items).unwrap_or_default();
    let field = |k: &str, v: &str| println!("{:<14} = {v}", k);
    field("ID", job.id.as_str());
    field("Name", &job.name);
    field("Namespace", &job.namespace);
    field("Type", job.r#type.as_str());
    field("State", &job.state.state_type.to_string());
    if !job.state.message.is_empty() {
        field("Message", &job.state.message);
    }
    field("Count", &job.count.to_string());
    field("Created Time", &datetime(job.create_time));
    field("Modified Time", &datetime(job.modify_time));
    field("Version", &job.version.to_string());
    if let Some(t) = job.task() {
        field("Engine", &t.engine.type_name());
        if !t.publisher.is_empty() {
            field("Publisher", &t.publisher.type_name());
        }
    }
    if let Some(m) = &job.market {
        let max = m.max_price.map_or_else(|| "none".to_owned(), price);
        field("Market", &format!("MaxPrice {max}, strategy {:?}", m.strategy()).to_lowercase());
    }
    if let Some(v) = &job.verification {
        field("Verification", &format!("{} replicas, quorum {}", v.replicas, v.quorum));
    }
    let cost: f64 = execs.iter().filter_map(|e| e.cost).sum();
    if execs.iter().any(|e| e.cost.is_some()) {
        field("Total Cost", &price(cost));
    }
    let mut counts = std::collections::BTreeMap::new();
    for e in &execs {
        *counts.entry(e.compute_state.state_type.name()).or_insert(0) += 1;
    }
    println!("\nSummary");
    for (state, n) in counts {
        println!("  {state:<12} : {n}");
    }
    println!("\nJob History");
    let plain = OutputArgs { output: Format::Table, wide: true, hide_header: false };
    let rows = history
        .iter()
        .filter(|h| h.execution_id.as_str().is_empty())
        .map(|h| vec![rfc_clock(&h.time), h.event.topic.clone(), h.event.message.clone()])
        .collect();
    print_list(&plain, &["time", "topic", "event"], rows, &())?;
    println!("\nExecutions");
    print_list(&OutputArgs { wide: false, ..plain.clone() }, &EXEC_HEADERS, exec_rows(&execs), &())?;
    for e in &execs {
        println!("\nExecution {} History", e.id.short());
        let rows = history
            .iter()
            .filter(|h| h.execution_id == e.id)
            .map(|h| vec![rfc_clock(&h.time), h.event.topic.clone(), h.event.message.clone()])
            .collect();
        print_list(&plain, &["time", "topic", "event"], rows, &())?;
    }
    for e in &execs {
        let Some(out) = &e.run_output else { continue };
        println!("\nStandard Output ({})", e.id.short());
        print!("{}", out.stdout);
        if out.stdout_truncated {
            println!("\n... output truncated: see `bacalhau job logs {}`", job.id);
        }
        if !out.stderr.is_empty() {
            println!("\nStandard Error ({})", e.id.short());
            print!("{}", out.stderr);
        }
        println!("\nExit Code: {}", out.exit_code);
        if let Some(r) = &e.published_result {
            println!("Published Result: {}", serde_json::to_string(r)?);
        }
    }
    Ok(())
}

async fn logs(client: &Client, args: &LogsArgs) -> Result<()> {
    if args.follow {
        let job = client.get_job(&args.id, "").await?.job;
        if args.execution_id.is_empty() {
            return wait::follow_logs(client, job.id.as_str()).await;
        }
    }
    client
        .logs(&args.id, &args.execution_id, args.follow, |_, line| print!("{line}"))
        .await
        .with_context(|| format!("reading the logs of {}", args.id))
}

async fn stop(client: &Client, args: &StopArgs) -> Result<()> {
    let job = client.get_job(&args.id, "").await?.job;
    let r = client.stop(job.id.as_str(), &args.reason).await?;
    if !args.quiet {
        if r.evaluation_id.is_empty() {
            println!("Job {} was already stopped.", job.id);
        } else {
            println!("Job stop successfully submitted with evaluation ID: {}", r.evaluation_id);
        }
    }
    Ok(())
}

async fn get(client: &Client, args: &crate::args::GetArgs) -> Result<()> {
    let dir = results::get(client, args).await?;
    println!("Results for job '{}' have been written to...\n{}", args.id, dir.display());
    Ok(())
}

async fn node_list(client: &Client, out: &OutputArgs) -> Result<()> {
    let nodes = client.nodes().await?;
    let rows = nodes
        .iter()
        .map(|n| {
            let c = n.info.compute_node_info.clone().unwrap_or_default();
            let max: Resources = c.max_capacity.into();
            let free: Resources = c.available_capacity.into();
            vec![
                n.info.node_id.to_string(),
                format!("{:?}", n.info.node_type),
                format!("{:?}", n.membership).to_uppercase(),
                format!("{:?}", n.connection).to_uppercase(),
                n.unhealthy_reason().unwrap_or_else(|| "ok".into()),
                c.execution_engines.join(" "),
                format!("{} / {}", fmt_cpu(free.cpu_millis), fmt_cpu(max.cpu_millis)),
                format!("{} / {}", fmt_bytes(free.memory_bytes), fmt_bytes(max.memory_bytes)),
                n.info.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
                c.prices.map_or_else(
                    || "free".to_owned(),
                    |p| {
                        format!(
                            "cpu-s {} mem-GB-s {} gpu-s {} out-GB {} min {}",
                            price(p.cpu_second),
                            price(p.memory_gb_second),
                            price(p.gpu_second),
                            price(p.output_gb),
                            price(p.min_price)
                        )
                    },
                ),
            ]
        })
        .collect();
    print_list(
        out,
        &["id", "type", "approval", "status", "health", "engines", "cpu free", "memory free", "labels", "prices"],
        rows,
        &nodes,
    )
}

async fn version(client: &Client, out: &OutputArgs) -> Result<()> {
    let client_version = serve::version_info();
    let server = client.version().await.ok();
    let rows = vec![vec![
        client_version.git_version.clone(),
        server.as_ref().map_or_else(|| "unreachable".to_owned(), |s| s.git_version.clone()),
    ]];
    let raw = serde_json::json!({ "clientVersion": client_version, "serverVersion": server });
    print_list(out, &["client", "server"], rows, &raw)
}

async fn node_action(client: &Client, action: &str, a: &crate::args::NodeActionArgs) -> Result<()> {
    let r = client.node_action(&a.id, action, &a.message).await?;
    if !r.success {
        anyhow::bail!("{}", r.error);
    }
    let done = match action {
        "approve" => "approved",
        "reject" => "rejected",
        _ => "deleted",
    };
    println!("Node {} {done}.", a.id);
    Ok(())
}

fn profile_command(data_dir: &std::path::Path, cmd: &crate::args::ProfileCommand) -> Result<()> {
    use crate::args::ProfileCommand;
    use crate::profile;
    match cmd {
        ProfileCommand::List => {
            let current = profile::current(data_dir);
            println!("{:<2} {:<20} {:<40} DESCRIPTION", "", "NAME", "ENDPOINT");
            for name in profile::names(data_dir) {
                let p = profile::load(data_dir, &name).unwrap_or_default();
                let mark = if current.as_deref() == Some(name.as_str()) { "*" } else { "" };
                println!("{mark:<2} {name:<20} {:<40} {}", p.endpoint, p.description);
            }
        }
        ProfileCommand::Save(a) => {
            let p = profile::Profile {
                endpoint: a.endpoint.trim().to_owned(),
                description: a.description.clone(),
                timeout: a.timeout.clone(),
                auth: (!a.auth_token.trim().is_empty())
                    .then(|| profile::ProfileAuth { token: a.auth_token.trim().to_owned() }),
                tls: a.insecure.then_some(profile::ProfileTls { insecure: true }),
            };
            profile::save(data_dir, &a.name, &p, a.select)?;
            println!("Profile {:?} saved{}", a.name, if a.select { " and selected" } else { "" });
        }
        ProfileCommand::Show { name } => {
            let (name, mut p) = match name {
                Some(n) => (n.clone(), profile::load(data_dir, n)?),
                None => profile::selected(data_dir, None)?
                    .context("no profile is selected: `bacalhau profile select NAME`")?,
            };
            // A token is a credential: show that there is one, not what it is.
            if let Some(a) = p.auth.as_mut() {
                a.token = "********".into();
            }
            println!("Profile: {name}");
            print!("{}", yaml_serde::to_string(&p)?);
        }
        ProfileCommand::Select { name } => {
            profile::select(data_dir, name)?;
            println!("Profile {name:?} selected");
        }
        ProfileCommand::Delete { name } => {
            profile::delete(data_dir, name)?;
            println!("Profile {name:?} deleted");
        }
    }
    Ok(())
}
