//! `junctiond`: the switch daemon. Loads the configuration, opens the ledger, starts the
//! engine, provisions what the configuration declares, and serves ISO 8583 over TCP and
//! HTTP (admin, metrics) until SIGTERM, which drains in-flight requests and stops cleanly.
//! Under systemd (`Type=notify`) it says when it is ready and when it starts stopping.

pub mod activity;
pub mod admission;
pub mod advices;
pub mod background;
pub mod cluster;
pub mod config;
pub mod console;
pub mod credit;
pub mod directory;
pub mod doors;
pub mod forwarding;
pub mod fx;
pub mod http;
pub mod iso_gateway;
pub mod issuer_links;
pub mod maintenance;
pub mod metrics;
pub mod moving;
pub mod qr;
pub mod replication;
pub mod tax_refunds;
pub mod telemetry;
pub mod tls;
pub mod tokens;
pub mod windows;

use anyhow::{Context, Result};
use config::Config;
use junction_engine::model::*;
use junction_engine::{Engine, EngineConfig};
use junction_ledger::{AccountId, Currency, Ledger, LedgerOptions, ParticipantId};
use std::sync::Arc;
use std::time::Duration;

/// How long SIGTERM waits for in-flight requests to be answered before stopping anyway.
pub const DRAIN_TIMEOUT_MS: u64 = 10_000;

/// The version `--version` prints: the package's and the git commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("JUNCTION_COMMIT"), ")");

/// The git commit this binary was built from ("unknown" outside a git checkout).
pub const COMMIT: &str = env!("JUNCTION_COMMIT");

/// Provisions what the configuration declares. Idempotent: a restart provisions nothing
/// twice and funds no account twice.
pub fn provision(engine: &Engine, config: &Config) -> Result<()> {
    for p in &config.participants {
        let mut spec = p.spec()?;
        // The configuration seeds a participant's caps; once it exists, the caps in force
        // are the ledger's (changed at runtime through the admin API, kept across restarts
        // and failovers). A currency the configuration adds gets its configured cap.
        if let Some(existing) = engine.participant(ParticipantId(p.id)) {
            for (currency, cap) in &mut spec.net_debit_caps {
                if let Some((_, in_force)) = existing.net_debit_caps.iter().find(|(c, _)| c == currency) {
                    *cap = *in_force;
                }
            }
            if existing == spec {
                continue;
            }
        }
        engine.add_participant(spec).with_context(|| format!("provisioning participant {}", p.id))?;
    }
    let accounts: Result<Vec<AccountSpec>> = config
        .accounts
        .iter()
        .map(|a| {
            Ok(AccountSpec {
                id: AccountId(u128::from(a.id)),
                participant: ParticipantId(a.participant),
                currency: Currency::from_code(&a.currency)?,
                opening_balance: a.opening_balance,
                status: AccountStatus::Active,
                velocity: VelocityLimits {
                    count_per_day_max: a.velocity_count_per_day_max,
                    amount_per_day_max: a.velocity_amount_per_day_max,
                },
            })
        })
        .collect();
    engine.add_accounts(&accounts?).context("provisioning accounts")?;
    let cards: Vec<CardSpec> = config
        .cards
        .iter()
        .map(|c| CardSpec {
            pan: c.pan.clone(),
            account: AccountId(u128::from(c.account)),
            expiry_yymm: config::parse_yymm(&c.expiry).unwrap_or(0),
        })
        .collect();
    engine.add_cards(&cards).context("provisioning cards")?;
    let mut tokens = Vec::new();
    for t in &config.tokens {
        tokens.push(TokenSpec {
            dpan: t.dpan.clone(),
            account: AccountId(u128::from(t.account)),
            expiry_yymm: config::parse_yymm(&t.expiry).unwrap_or(0),
            allowed_entry_modes: config::parse_entry_modes(&t.entry_modes)?,
            fpan: t.fpan.clone(),
        });
    }
    engine.add_tokens(&tokens).context("provisioning tokens")?;
    // The configuration's BIN table, unless the admin API changed it since (the table in
    // force is the ledger's).
    if !config.bin_routes.is_empty() && engine.bin_routes().is_empty() {
        engine.set_bin_routes(config.bin_routes.clone()).context("provisioning the BIN table")?;
    }
    // The same for the fee schedule: the ledger's, once the admin API has set one.
    let schedule = match engine.stored_fee_schedule(config.participant_countries()).context("the fee schedule")? {
        Some(stored) => Some(stored),
        None => config.fee_schedule()?,
    };
    match schedule {
        Some(schedule) => engine.set_fee_schedule(schedule).context("setting the fee schedule")?,
        None => engine.install_fee_schedule(junction_engine::fees::FeeSchedule {
            countries: config.participant_countries(),
            ..Default::default()
        }),
    }
    engine.sync()?;
    Ok(())
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(mut config: Config) -> Result<()> {
    let switch = config.switch.clone();
    std::fs::create_dir_all(&switch.data_dir)
        .with_context(|| format!("creating the data dir {}", switch.data_dir.display()))?;
    let ledger_dir = switch.data_dir.join("ledger");
    let ledger_options = LedgerOptions {
        wal_size_bytes_max: switch.ledger_wal_size_bytes_max,
        // The index is bounded (older ids go to the cold index): reserving the bound at
        // open means it never doubles under the commit lock while the switch runs.
        transfers_reserved: if switch.ledger_transfers_reserved == 0 {
            switch.index_memory_entries_max
        } else {
            switch.ledger_transfers_reserved
        },
        duplicate_window_s: switch.duplicate_window_s,
        index_memory_entries_max: switch.index_memory_entries_max,
        ..LedgerOptions::default()
    };
    let admission = Arc::new(admission::Admission::new(switch.requests_in_flight_max));
    let (ledger, replicated) = match &config.replication {
        None => {
            let ledger = tokio::task::block_in_place(|| Ledger::open(&ledger_dir, ledger_options))
                .with_context(|| format!("opening the ledger in {}", ledger_dir.display()))?;
            (Arc::new(ledger), None)
        }
        Some(settings) => {
            let cluster = replication::Cluster::connect(settings).await?;
            let (ledger, seed) = replication::open_ledger(&cluster, &ledger_dir, ledger_options).await?;
            let ledger = Arc::new(ledger);
            let status = Arc::new(replication::Status { node: settings.node.clone(), ..Default::default() });
            status.applied_seq.store(ledger.last_seq(), std::sync::atomic::Ordering::Relaxed);
            admission.serve_until(0);
            let standby_tls = switch.http_tls.as_ref().map(|tls| tls::acceptor(tls, "switch.http_tls")).transpose()?;
            let standby_http = http::StandbyServer::start(switch.http_listen, standby_tls, Arc::clone(&status)).await?;
            println!("junctiond standby http={}", standby_http.address);
            // A node that follows the stream is up: it may stay a standby for months, and
            // opens its ISO 8583 port only when it takes over (STATUS says which).
            notify_service_manager(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status("standby: following the journal stream"),
            ]);
            let term =
                replication::follow_until_primary(&cluster, &ledger, &status, &admission, switch.standby, seed).await?;
            config.switch.http_listen = standby_http.stop().await;
            replication::start_primary(cluster.clone(), Arc::clone(&ledger), Arc::clone(&status), term)?;
            (ledger, Some((cluster, status)))
        }
    };
    let switch = &config.switch;
    let recovery = ledger.recovery();
    tracing::info!(
        entries = recovery.entries_replayed,
        transfers = recovery.transfers_replayed,
        recovery_us = recovery.duration_us,
        "ledger opened"
    );
    let shards = if switch.shards == 0 { EngineConfig::default().shards } else { switch.shards };
    let engine_config = EngineConfig {
        shards,
        shard_queue_depth_max: switch.shard_queue_depth_max,
        commit_delay_us: switch.commit_delay_us,
        vault_key: hex::decode(&switch.vault_key).context("decoding switch.vault_key")?,
    };
    let engine = Arc::new(tokio::task::block_in_place(|| Engine::start(Arc::clone(&ledger), engine_config))?);
    tokio::task::block_in_place(|| provision(&engine, &config))?;

    let metrics = Arc::new(metrics::Metrics::new()?);
    let node = config.replication.as_ref().map(|replication| replication.node.as_str());
    let telemetry = match &config.telemetry {
        Some(settings) => Some(Arc::new(telemetry::Telemetry::start(settings, node)?)),
        None => None,
    };
    let directory = Arc::new(tokio::task::block_in_place(|| -> Result<directory::Directory> {
        let directory = directory::Directory::load(&config, Arc::clone(&engine))?;
        Ok(directory)
    })?);
    // A partitioned switch: the map is read before any request is taken.
    let partitions = match (&config.cluster, &replicated) {
        (Some(settings), Some((cluster, _))) => {
            let replication = config.replication.as_ref().context("cluster needs [replication]")?;
            // Net debit caps are the switch's, leased in slices by the partitions: this
            // one enforces its lease, not its configuration's cap, before any request.
            let (js, client) = (cluster.jetstream(), cluster.client());
            let partitions = cluster::Partitions::start(js, client, settings, replication, &engine).await?;
            Some(partitions)
        }
        _ => None,
    };
    let link_config = &config.issuer_links;
    let (links, late_answers) =
        issuer_links::IssuerLinks::new(Duration::from_millis(link_config.late_answer_window_ms));
    let links = Arc::new(links);
    let advices =
        Arc::new(advices::Advices::new(Arc::clone(&engine), Arc::clone(&links), switch.institution_id.clone()));
    let forwarding = Arc::new(forwarding::Forwarding {
        engine: Arc::clone(&engine),
        links: Arc::clone(&links),
        advices: Arc::clone(&advices),
        metrics: Arc::clone(&metrics),
        switch_institution: switch.institution_id.clone(),
        timeout: Duration::from_millis(link_config.timeout_ms),
    });
    let iso = Arc::new(iso_gateway::IsoContext::new(
        Arc::clone(&engine),
        Arc::clone(&directory),
        Arc::clone(&metrics),
        Arc::clone(&admission),
        Arc::clone(&forwarding),
        telemetry.clone(),
        partitions.clone(),
    ));
    let clearing = Arc::new(windows::Windows::new(
        switch.data_dir.join("clearing"),
        &config,
        Arc::clone(&engine),
        Arc::clone(&directory),
    ));
    // Windows closed before a crash without their files get them now.
    let catch_up = Arc::clone(&clearing);
    tokio::task::spawn_blocking(move || catch_up.catch_up());
    let http_context = Arc::new(http::HttpContext {
        engine: Arc::clone(&engine),
        directory: Arc::clone(&directory),
        clearing: Arc::clone(&clearing),
        iso: Arc::clone(&iso),
        metrics: Arc::clone(&metrics),
        admin_token: switch.admin_token.clone(),
        read_token: switch.read_token.clone(),
        recovery_us: recovery.duration_us,
        switch_name: switch.name.clone(),
        fault_injection: switch.fault_injection,
        replication: replicated.as_ref().map(|(_, status)| Arc::clone(status)),
        cluster: partitions.clone(),
    });
    let iso_tls = switch.iso8583_tls.as_ref().map(|tls| tls::acceptor(tls, "switch.iso8583_tls")).transpose()?;
    let http_tls = switch.http_tls.as_ref().map(|tls| tls::acceptor(tls, "switch.http_tls")).transpose()?;
    let iso_listener = tokio::net::TcpListener::bind(switch.iso8583_listen)
        .await
        .with_context(|| format!("listening for ISO 8583 on {}", switch.iso8583_listen))?;
    let http_listener = tokio::net::TcpListener::bind(switch.http_listen)
        .await
        .with_context(|| format!("listening for HTTP on {}", switch.http_listen))?;
    let iso_address = iso_listener.local_addr()?;
    let http_address = http_listener.local_addr()?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    if let Some(partitions) = &partitions {
        let serving = Arc::clone(partitions).serve(Arc::clone(&iso), shutdown_rx.clone());
        tokio::spawn(async move {
            if let Err(error) = serving.await {
                tracing::error!(error = format!("{error:#}"), "serving other partitions' doors failed");
            }
        });
        tokio::spawn(Arc::clone(partitions).follow(Arc::clone(&clearing), shutdown_rx.clone()));
        tokio::spawn(Arc::clone(partitions).lease_caps(Arc::clone(&engine), shutdown_rx.clone()));
        tokio::spawn(moving::run(Arc::clone(partitions), Arc::clone(&engine), shutdown_rx.clone()));
    }
    let iso_task = tokio::spawn(iso_gateway::serve(iso_listener, iso_tls, Arc::clone(&iso), shutdown_rx.clone()));
    let cutoffs: Vec<(u32, u32)> = switch.cutoff_times.iter().filter_map(|t| config::parse_hh_mm(t)).collect();
    tokio::spawn(windows::cutoff_loop(
        Arc::clone(&clearing),
        switch.cutoff_utc_offset_minutes,
        cutoffs,
        shutdown_rx.clone(),
    ));
    let qr_gateway = Arc::new(
        qr::QrGateway::new(
            Arc::clone(&engine),
            &directory,
            &config,
            Arc::clone(&admission),
            Arc::clone(&metrics),
            telemetry.clone(),
        )
        .map_err(anyhow::Error::msg)?,
    );
    let credit_gateway = Arc::new(
        credit::CreditGateway::new(
            Arc::clone(&engine),
            &directory,
            &config,
            Arc::clone(&admission),
            Arc::clone(&metrics),
            qr_gateway.fx(),
        )
        .map_err(anyhow::Error::msg)?,
    );
    // The debtors' usage is loaded before anything is served (limits hold across restarts).
    let loader = Arc::clone(&credit_gateway);
    let open_credits = tokio::task::spawn_blocking(move || loader.load())
        .await?
        .map_err(|e| anyhow::anyhow!("loading the credit transfer records: {e}"))?;
    tokio::spawn(credit::resume_and_prune(Arc::clone(&credit_gateway), open_credits, shutdown_rx.clone()));
    let tax_refunds = Arc::new(
        tax_refunds::TaxRefunds::new(Arc::clone(&engine), &directory, &config, Arc::clone(&admission), qr_gateway.fx())
            .map_err(anyhow::Error::msg)?,
    );
    let loader = Arc::clone(&tax_refunds);
    let open_refunds = tokio::task::spawn_blocking(move || loader.load())
        .await?
        .map_err(|e| anyhow::anyhow!("loading the tax refund records: {e}"))?;
    if open_refunds > 0 {
        tracing::info!(open_refunds, "tax refunds with an open guarantee loaded");
    }
    tokio::spawn(tax_refunds::sweep_loop(Arc::clone(&tax_refunds), shutdown_rx.clone()));
    let tokens = Arc::new(tokens::TokenService::new(Arc::clone(&engine), &directory, &config, Arc::clone(&links)));
    tokio::spawn(maintenance::checkpoint_loop(Arc::clone(&engine), shutdown_rx.clone()));
    tokio::spawn(forwarding::late_answers(Arc::clone(&forwarding), late_answers));
    tokio::spawn(maintenance::issuer_links_loop(Arc::clone(&links), link_config.clone(), shutdown_rx.clone()));
    tokio::spawn(maintenance::advices_loop(
        Arc::clone(&advices),
        Arc::clone(&metrics),
        link_config.clone(),
        shutdown_rx.clone(),
    ));
    let console = Arc::new(console::Console {
        engine: Arc::clone(&engine),
        clearing: Arc::clone(&clearing),
        iso: Arc::clone(&iso),
        metrics: Arc::clone(&metrics),
        http: Arc::clone(&http_context),
        switch_name: switch.name.clone(),
        live: console::live::Live::default(),
    });
    tokio::spawn(console::sample_loop(Arc::clone(&console), shutdown_rx.clone()));
    // The wallets' and payment systems' requests: in a partitioned switch, booked by the
    // partition the map places their sender in, whichever door they reach.
    let payers = qr::router(qr_gateway).merge(credit::router(credit_gateway));
    let payers = match (&partitions, &config.cluster) {
        (Some(partitions), Some(settings)) => {
            let deadline =
                Duration::from_millis(settings.request_timeout_ms + config.credit_transfers.answer_within_ms);
            let signers = qr::Signers::new(Arc::clone(&directory), &config);
            let doors = Arc::new(doors::HttpDoors::new(Arc::clone(partitions), signers, deadline));
            let payers = payers.layer(axum::middleware::from_fn_with_state(doors, doors::door));
            let serving = doors::serve(Arc::clone(partitions), payers.clone(), shutdown_rx.clone());
            tokio::spawn(async move {
                if let Err(error) = serving.await {
                    tracing::error!(error = format!("{error:#}"), "serving other partitions' HTTP doors failed");
                }
            });
            payers
        }
        _ => payers,
    };
    let router = http::admin_router(Arc::clone(&http_context))
        .merge(payers)
        .merge(tax_refunds::router(tax_refunds))
        .merge(tokens::router(tokens))
        .merge(console::router(console));
    let mut http_shutdown = shutdown_rx.clone();
    let http_task = tokio::spawn(async move {
        let stopped = async move {
            let _ = http_shutdown.changed().await;
        };
        if let Err(error) = tls::serve_http(http_listener, http_tls, router, stopped).await {
            tracing::error!(%error, "HTTP server failed");
        }
    });
    let (iso_tls_on, http_tls_on) = (switch.iso8583_tls.is_some(), switch.http_tls.is_some());
    tracing::info!(iso8583 = %iso_address, iso8583_tls = iso_tls_on, http = %http_address, http_tls = http_tls_on, shards, "junctiond ready");
    // One plain line on stdout for scripts and tests that start the daemon on port 0.
    println!("junctiond ready iso8583={iso_address} http={http_address}");
    // Both listeners are bound and served: systemd may start what comes after the switch.
    let serving = format!("serving: iso8583 {iso_address}, http {http_address}");
    notify_service_manager(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&serving)]);
    wait_for_signal().await;
    tracing::info!("stopping: no new connections, draining in-flight requests");
    notify_service_manager(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("stopping: draining in-flight requests, then a checkpoint"),
    ]);
    let _ = shutdown_tx.send(true);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(DRAIN_TIMEOUT_MS);
    while admission.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = iso_task.await;
    let _ = http_task.await;
    tokio::task::block_in_place(|| engine.shutdown());
    if let Some((cluster, _)) = &replicated {
        // Everything is replicated: hand the lease over now rather than let it lapse.
        cluster.step_down().await;
    }
    // Everything accepted is committed: a checkpoint now makes the next start quick.
    maintenance::checkpoint(&engine).await;
    if let Some(telemetry) = &telemetry {
        // The last spans go out before the process ends.
        tokio::task::block_in_place(|| telemetry.shutdown());
    }
    tracing::info!(durable_seq = ledger.durable_seq(), "junctiond stopped cleanly");
    Ok(())
}

/// Tells the service manager (systemd, `Type=notify`) how the daemon is doing. Without
/// `$NOTIFY_SOCKET` (not started by systemd) it does nothing.
fn notify_service_manager(states: &[sd_notify::NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "could not notify the service manager");
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    match (terminate, interrupt) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
